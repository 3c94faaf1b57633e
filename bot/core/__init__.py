"""The platform-neutral core: notices, the directory, delivery, compliance and onboarding.

It speaks in members, notices, deliveries and acknowledgements and imports no web framework and no
platform SDK; adapters (Slack, Teams, the CLI, the HTTP API) call it, and outbound channels implement
`bot.core.ports.Channel` for it."""

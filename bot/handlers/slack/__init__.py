"""Inbound Slack: the slash command, buttons, modals, events and direct messages, turned into core calls.

One folder per kind of listener, as in Slack's bolt-python starter template; each module registers
its own listeners with `register(app, herald)`:

- `commands/`  the `/herald` slash command
- `actions/`   buttons and menus: notices (Send, Cancel, Acknowledge, Remind now, Open report),
               the assistant (Helpful, Not helpful, Ask my CAM, Reply), journeys (Done), App Home preferences
- `views/`     modal submissions: compose and preview, edit, the CAM's reply
- `events/`    Events API: App Home opened, app uninstalled / tokens revoked
- `messages/`  direct messages to the bot (questions for the onboarding assistant)

`app.py` builds bolt's AsyncApp (signature check, per-workspace tokens) and the aiohttp route;
`oauth.py` is "Add to Slack"; `replies.py` renders command results.
"""

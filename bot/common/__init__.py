"""Small building blocks every layer uses (core, topics, adapters): the user-facing error root,
clocks, working-hours time rules and secrets at rest. Nothing here imports the rest of Herald."""

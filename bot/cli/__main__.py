"""`python -m bot.cli ...` is the `herald` program."""

from bot.cli import main

main()

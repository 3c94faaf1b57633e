"""Inbound Microsoft Teams: `POST /api/messages`, turned into core calls.

- `route.py`     the aiohttp route behind the Agents SDK's JWT check; activity parsing (`Turn`)
- `handler.py`   installs, messages (staff commands, partner questions, preferences), replies
- `cards/`       Adaptive Card `Action.Execute` invokes, one module per subject, each a table of
                 verb → handler: `notices.py` (Acknowledge, Send, Cancel, Preview, Update of the
                 edit card, Remind now, Open report), `assistant.py` (Helpful, Not helpful, Ask my CAM, Reply),
                 `journeys.py` (Done), `preferences.py` (Save)
"""

"""Notices from compose to acknowledgement: sending, the neutral message view, acknowledgements,
reminders, escalations, edits and retractions, digests and status counts."""

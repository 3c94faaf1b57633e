"""The delivery engine: the outbox every outbound message goes through, with claims, pacing,
429 handling, retries and crash safety."""

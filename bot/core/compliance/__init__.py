"""Proof for compliance: the hash-chained audit trail and its verification, acknowledgement reports,
signed report links and API tokens."""

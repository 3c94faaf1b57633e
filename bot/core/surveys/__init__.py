"""Pulse surveys: a question with one-click answers, sent as a notice through the outbox.

`spec` (what a survey asks, validated), `creating` (drafts and journey-step surveys),
`answers` (one current answer per member, changes kept, anonymity, closing), `results` (the one
function every surface reads results from).
"""

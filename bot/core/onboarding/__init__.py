"""The onboarding assistant (questions answered from the knowledge base, hand-offs to the CAM) and
onboarding journeys (small steps trickled to new partner members)."""

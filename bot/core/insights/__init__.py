"""Read models for the console: aggregate SQL over notices, deliveries, acknowledgements, the
directory and onboarding. Every query groups or pages in the database, so a page costs the same
with five recipients as with 100,000 (bench/console.py measures it)."""

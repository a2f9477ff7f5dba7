"""Domain logic with no Telegram types: tips, cases, users, media, audit, the outbox."""

"""Between Telegram and the handlers: updates in (polling or webhook -> inbox -> per-user processor)
and messages out (outbox -> one paced sender)."""

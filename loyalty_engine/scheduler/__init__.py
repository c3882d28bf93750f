"""The long-running scheduler: APScheduler 3 behind a small port of our own."""

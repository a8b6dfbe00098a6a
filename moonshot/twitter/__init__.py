"""The bot phase: tweets to coins. The tweet parser (`tweets`), X API v2 polling (`xapi`),
the policy that decides which tweets may become coins (`policy`), and `ingest`, which
records each decision and creates the coin in the target. Never imports `app`, `photos`
or `cli`; the service's core never imports this package."""

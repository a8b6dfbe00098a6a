"""Running the service for a person: launchd agents (`launchd`), health and `status`,
`doctor`, spool clean-up (`cleanup`), logging (`logs`), the read-only datasette
`dashboard`, and alerts through apprise (`alerts`, `alert_events`, `alert_urls`). Reads the state through `moonshot.store` (the dashboard through its own
mode=ro connections); never imports `app`, `twitter` or `cli`, and never drives a port's
side effect: doctor and health ask, never import a photo or launch."""

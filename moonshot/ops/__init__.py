"""Running the service for a person: launchd agents (`launchd`), health and `status`,
`doctor`, spool clean-up (`cleanup`) and logging (`logs`). Reads the state through
`moonshot.store`; never imports `app`, `twitter` or `cli`, and never drives a port's
side effect: doctor and health ask, never import a photo or launch."""

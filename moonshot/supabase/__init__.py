"""The queue: where coins come from. The Source port's real adapter (`source_supabase`,
claims through the migration's SQL functions in `sql/`), its LISTEN/NOTIFY wake-up
(`listen`), its embedded adapter (`source_local`: the coins table itself, fed by
`moonshot add`), and the ingest target that writes an accepted tweet's coin to Supabase
(`ingest_target`). Never imports `app`, `photos`, `twitter` or `cli`."""

"""The Photos library port: the real macOS adapter (`library_macos`: PhotoKit or
AppleScript for the import, read-only queries for everything else), its embedded adapter
(`library_folder`: a directory that behaves like a library), the read-only reader of
Photos.sqlite (`photos_sqlite`) and the name index kept outside the library
(`name_index`). Never imports `app`, `twitter`, `supabase` or `cli`; macOS-only modules
are imported inside the adapter's methods, never at import time."""

"""The Moonshot app: the Launcher port. The flow format (`flow`, TOML steps), the runner
that executes steps on a screen driver (`runner`), the real driver (`driver`: pyautogui,
screenshots, clipboard), image matching (`matching`), reading the screen back (`ocr`,
`readback`), text made safe to enter (`safetext`), and the two launchers: `launcher_gui`
(the app, by GUI automation) and its embedded adapter `launcher_ledger` (a JSON-lines
ledger). Making a flow: `recorder` and `propose` (`flow record`), `flowfile` (edits that
keep the user's file), `walk` (`flow check --walk`), `sheet` (`flow show`), `display`
(whether the screen can be reached). Never opens moonshot.db: no module here imports sqlite; the service's core never
imports this package."""

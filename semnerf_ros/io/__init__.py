"""Files: atomic writes (:mod:`.atomic`), JSON output (:mod:`.jsonio`), PLY (:mod:`.ply`).
numpy only; imports nothing else of semnerf_ros.

Importing this package imports nothing; import the modules you need."""

"""A run on disk: writing it (:mod:`.write`), reading it back (:mod:`.read`) with paths kept inside the
run folder (:mod:`.rundir`), image files and contact sheets (:mod:`.images`), notebook display
(:mod:`.display`), the HTML report (:mod:`.report`)."""

"""What ``biometrics serve`` and ``biometrics ship`` share: private to this distribution.

Both daemons consume a spool that anyone able to write it may have planted names in, so both
claim, skip and dispose of segments through one skeleton (:mod:`.consumer`), open every file
relative to a directory descriptor without following links (:mod:`.safe_open`), move and
quarantine the same way (:mod:`.spool`), check their options the same way before anything
binds (:mod:`.preflight`), log logfmt lines (:mod:`.logfmt`) and count their own health with
sensors (:mod:`.selfmetrics`).  The CLI's offline tools borrow the progress bar (:mod:`.bar`).

Importing this package imports nothing: each module is imported where it is used, so the
``exporter`` and ``ship`` extras stay independent.
"""

"""`make bench`: figures for the speed targets of OpsPortal, printed, never asserted.

Run through ``scripts/bench.sh``, which points ``DATABASE_URL`` at its own database
(``opsportal_bench``) on the test server, migrates it and collects the static files, then runs
``python -m bench``:

- ``bench.dispatch``: from the POST of an action to the operation running on a real worker;
- ``bench.operations_list``: server time and SQL queries of the operations list, at 100 and at
  10,000 operations.

Nothing here is collected by pytest: benchmarks print figures, tests assert behaviour.
"""

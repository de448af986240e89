"""Process control: the supervisor's internals and the runtime its children use.

``supervisor.py`` at the repository root is the thin entry point. Inside:

- ``states``: the process states (shared_state's enum) and the transition table.
- ``policy``: pure restart rules (backoff, flapping, startsecs, heartbeat staleness).
- ``children``: THE table of managed children and phase jobs.
- ``environment``: the environment every child is started with.
- ``process``: the one object over OS process calls.
- ``lock``: the single-instance lock.
- ``identity``: a process as pid + create time (pid reuse is not mistaken for it).
- ``schedule``: the day's plan (date, clock, phase times) and what is due.
- ``phase_runner``: runs the phases at their times and records their outcome.
- ``status``: the status snapshot, its table and its JSON.
- ``supervisor``: the monitor loop.
- ``child``: the runtime every child process uses (heartbeat, readiness, stop signal).
"""

"""Helper threads of a server process must not preempt its event loop.

grpc.aio serves from one event-loop thread, beside which grpc runs its own threads: the completion-
queue poller (a Python thread that wakes several times per call to hand events to the loop), the
event-engine pool and a timer thread. On a node whose cores are all busy, every wakeup of the
poller preempted the event loop: `bench-verify` counted 24,000 involuntary context switches per
second on each verify_svc process's loop thread. Under SCHED_BATCH a woken thread does not preempt
the running one; it runs when a core is free or at the next scheduler tick, which on a busy node is
soon enough. Threads the helpers start later inherit the policy.
"""

from __future__ import annotations

import os
import threading


def batch_helper_threads() -> int:
    """Put every thread of this process except the calling one (the event loop's) under SCHED_BATCH.
    Returns how many were changed; 0 where the platform has no SCHED_BATCH."""
    if not hasattr(os, "SCHED_BATCH"):
        return 0
    loop_thread = threading.get_native_id()
    changed = 0
    for entry in os.listdir("/proc/self/task"):
        tid = int(entry)
        if tid == loop_thread:
            continue
        try:
            os.sched_setscheduler(tid, os.SCHED_BATCH, os.sched_param(0))
            changed += 1
        except OSError:  # the thread ended meanwhile, or the policy is not ours to change
            pass
    return changed

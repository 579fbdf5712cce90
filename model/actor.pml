/* One actor, both sides (contract A3, A6).
 *
 * SPDX-License-Identifier: MIT
 *
 * Side 0 creates actor 0; then either side, or both (crossed Destroys),
 * may destroy it at any time; each side's application sends up to MAXMSG
 * MSGs while it may (ALIVE, or DELETING before its Delete: its final
 * messages), and answers a Destroy at once or later (CURFEW_PENDING, then
 * curfew_actor_delete). Either side may crash once, right after any frame
 * it sent or received.
 *
 * Checked (see channel.inc for the common properties): no deadlock,
 * on_destroy exactly once per side that did not crash, never ABNORMAL
 * without a crash; without a crash every MSG sent is received before
 * on_destroy on the receiving side, and the reason is DELETED on both
 * sides (the Destroy's reason, crossed or not).
 *
 * Run: sh model/check.sh actor
 */

#define NACT 1
#define MAXMSG 3
#define QSZ 8            /* HELLO CREATE MSG*3 DESTROY DELETE, and spare */

#define MAY_SEND(a) 1
#define MAY_DESTROY(a) 1
#define REASON_OK(a, r) ((r) == DELETED)
/* both sides past their start, no actor left on either, nothing in
 * flight toward this side (or this side's channel failed) */
#define DONE (chstate[me] == CLOSED || \
              (started[0] && started[1] && nactors[0] == 0 && \
               nactors[1] == 0 && len(q[me]) == 0))
#define SCEN_CHOICES

#include "channel.inc"

inline after_destroy(a) { skip }

inline scen_act() { skip }

inline scen_start()
{
    if
    :: me == 0 -> app_create(0, NONE)
    :: else -> skip
    fi
}

inline final_check() { skip }

inline crash_forget_scen() { skip }

#include "side.inc"

init
{
    atomic {
        mgr[0] = NONE;
        run Side(0);
        run Side(1)
    }
}

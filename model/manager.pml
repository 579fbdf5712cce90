/* A manager with two managees (contract A3, A4, A6).
 *
 * SPDX-License-Identifier: MIT
 *
 * Side 0 creates the manager M (actor 0) and its managee C1 (actor 1);
 * side 1 may create a second managee C2 (actor 2) under M while M is
 * ALIVE there, so its CREATE can cross a Destroy of M from side 0 (it
 * then arrives for a manager side 0 is destroying, and goes at once).
 * Either side, or both (crossed), may destroy M: the cascade sends
 * Destroy (MANAGER_DELETED) for the managees not already in a handshake,
 * then Destroy (DELETED) for M. Each side may also destroy one managee of
 * its choice, before, after or crossed with a cascade from the other
 * side. Each side's application sends MSGs while it may (up to MAXMSG per
 * actor and MSGTOTAL in all) and answers a Destroy at once or later.
 * Either side may crash once, right after any frame it sent or received.
 *
 * Checked (besides channel.inc's common properties): no deadlock; on
 * every side that did not crash each actor is finalised exactly once and
 * the managees before their manager; a Delete never arrives for a manager
 * with live managees (A4); without a crash no MSG is lost and the reasons
 * are DELETED for M and DELETED or MANAGER_DELETED for a managee, the one
 * its Destroy carried.
 *
 * Run: sh model/check.sh manager
 */

#define NACT 3
#define MAXMSG 1
#define QSZ 12           /* HELLO CREATE*2 MSG*3 DESTROY*3 DELETE*3 */

byte mbudget[2];         /* managee Destroys the application may still do */

#define MSGTOTAL 2       /* MSGs per side, over all actors */
#define MAY_SEND(a) (msent[ME(0)] + msent[ME(1)] + msent[ME(2)] < MSGTOTAL)
#define MAY_DESTROY(a) ((a) == 0 || mbudget[me] > 0)
#define REASON_OK(a, r) ((a) == 0 -> (r) == DELETED : \
                         ((r) == DELETED || (r) == MANAGER_DELETED))
#define DONE (chstate[me] == CLOSED || \
              (started[0] && started[1] && nactors[0] == 0 && \
               nactors[1] == 0 && len(q[me]) == 0))
/* side 1 creates C2 under M (curfew_actor_create: M must be ALIVE) */
#define SCEN_CHOICES \
    :: me == 1 && !created[2] && CAN_CREATE_UNDER(0) -> act = 10

#include "channel.inc"

inline after_destroy(a)
{
    if
    :: a != 0 -> mbudget[me]--
    :: else -> skip
    fi
}

inline scen_act()
{
    if
    :: act == 10 -> app_create(2, 0)
    :: else -> skip
    fi
}

inline scen_start()
{
    if
    :: me == 0 -> app_create(0, NONE); app_create(1, 0)
    :: else -> skip
    fi
}

inline final_check() { skip }

inline crash_forget_scen() { mbudget[me] = 0 }

#include "side.inc"

init
{
    atomic {
        mgr[0] = NONE;
        mgr[1] = NONE;
        mgr[2] = NONE;
        mbudget[0] = 1;
        mbudget[1] = 1;
        run Side(0);
        run Side(1)
    }
}

/* Closing a channel: the WillClose handshake (contract A5, A6).
 *
 * SPDX-License-Identifier: MIT
 *
 * Side 0 creates one or two actors: A0 (actor 0), and optionally its
 * managee A1 (actor 1). Side 1 may create A2 (actor 2, top level or under
 * A0) while its channel is OPEN, so that CREATE may be in flight when
 * side 0 starts closing (it then arrives at a side that sent WillClose,
 * and the new actor is destroyed at once). Side 0 closes the channel at
 * some point; side 1 may close it too, before it learns of side 0's close
 * (crossed close) or instead of it (side 1 first). curfew_channel_close()
 * sends Destroy (NORMAL_CLOSE) for every actor tree, then WillClose. Each
 * side's application sends up to MAXMSG MSGs per actor while it may (its
 * final messages when the peer's Destroy arrives) and answers a Destroy at
 * once or later. Either side may crash once, right after any frame it
 * sent or received.
 *
 * Checked (besides channel.inc's common properties): no deadlock; every
 * side that did not crash reaches CLOSED (a side stops only there); every
 * actor is finalised exactly once on each such side, and without a crash
 * with NORMAL_CLOSE, no MSG lost, and both sides close normally (on_close
 * 0); a side that closes normally has nothing in flight toward it and
 * nothing is sent to it afterwards (the peer's EOF comes after its
 * WILLCLOSE_ACK, so it is normal).
 *
 * Run: sh model/check.sh willclose
 */

#define NACT 3
#define MAXMSG 1
#define QSZ 14           /* HELLO CREATE*2 MSG*3 DESTROY*3 DELETE*3
                            WILLCLOSE WILLCLOSE_ACK */

#define MAY_SEND(a) 1
#define MAY_DESTROY(a) 0
#define REASON_OK(a, r) ((r) == NORMAL_CLOSE)
#define DONE (chstate[me] == CLOSED)
#define SCEN_CHOICES \
    /* side 1 creates A2, top level or under A0 */ \
    :: me == 1 && !created[2] && CAN_CREATE_UNDER(NONE) -> act = 10 \
    :: me == 1 && !created[2] && CAN_CREATE_UNDER(0) -> act = 11 \
    /* curfew_channel_close(): side 0, and side 1 for a crossed close */ \
    :: chstate[me] == OPEN -> act = 12

#include "channel.inc"

inline after_destroy(a) { skip }

inline scen_act()
{
    if
    :: act == 10 -> app_create(2, NONE)
    :: act == 11 -> app_create(2, 0)
    :: act == 12 -> app_close()
    :: else -> skip
    fi
}

inline scen_start()
{
    if
    :: me == 0 ->
        app_create(0, NONE);
        if
        :: app_create(1, 0)
        :: skip
        fi
    :: else -> skip
    fi
}

inline final_check()
{
    /* CLOSED, and without a crash normally on both sides */
    assert(chstate[me] == CLOSED);
    assert(ncrash > 0 || close_err[me] == 0)
}

inline crash_forget_scen() { skip }

#include "side.inc"

init
{
    atomic {
        mgr[0] = NONE;
        mgr[1] = NONE;
        mgr[2] = NONE;
        run Side(0);
        run Side(1)
    }
}

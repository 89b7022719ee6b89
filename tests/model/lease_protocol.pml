/*
 * The gate / lease-controller / offload protocol of one acb process
 * (csrc/torch/gate.*, csrc/torch/lease_controller.*, csrc/client/lease_state.*,
 * csrc/alloc/arena_offload.cpp), as a Promela model for spin.
 *
 * Threads of the process:
 *   user     issues OPS operators (each after an allocation outside any
 *            operator with ALLOC): Gate::enter (fast path, slow path with the
 *            acquirer: acquire, wait for the grant, Arena::restore_all, open
 *            the gate as holding), the op's write, DirtyTracker's mark,
 *            Gate::exit.
 *   monitor  honours a revoke: at an idle gap or past the deadline (the model
 *            lets it choose any moment, which covers both, with and without a
 *            deadline) it runs yield_now: close_and_drain, synchronise, send
 *            release, mark the gate released.
 *   io       the connection's I/O thread: grant (LeaseState::on_grant),
 *            revoke (revoke pending), evict (under the gate's state lock:
 *            Arena::offload when quiescent, then a residency report).
 * and the broker, abstracted to what the arbiter may send this client: a
 * grant to a waiter, a revoke to the holder, an evict to a client it does
 * not count as holding, and an evict to the holder after a residency report
 * it cannot account for (Arbiter::State::apply_residency).
 *
 * Memory is one segment: `dev` (device bytes, a write counter), `bak` (its
 * host backup), `mapped`, `copying` (an offload's device-to-host copy in
 * progress) and `bcur` (Segment::backup_current). `writes` counts the
 * program's writes.
 *
 * Properties (asserts):
 *   - an op runs only on mapped memory that is not being copied out;
 *   - the arena allocates only under a held lease, on resident memory;
 *   - an offload's backup holds every write made before it (bak == writes
 *     when the segment is unmapped), clean skips included;
 *   - at the end the program's memory holds every write.
 *
 * Variants (-D on spin's command line):
 *   RACY_EVICT  the protocol before the fix: an evict is executed whenever
 *               the gate is released or acquiring, even once the grant of the
 *               acquire in progress has been read; the acquirer then restores
 *               and opens the gate without the state lock, and the offload
 *               unmaps memory the next op runs on. Without it (the fix) an
 *               evict is executed only while the connection holds no grant
 *               (BrokerClient::holds()).
 *   ALLOC       each op is preceded by an allocation outside any operator
 *               (ArenaCpuAllocator: a scalar the Python binding wraps into a
 *               tensor), which holds the gate across Arena::malloc.
 *   RACY_ALLOC  ALLOC as before the fix: enter, exit, then malloc, which can
 *               then run after a yield, on a device the process no longer
 *               holds, on memory an evict has unmapped.
 */

#define OPS 2
/* RACY_ALLOC implies ALLOC */
#ifdef RACY_ALLOC
#define ALLOC
#endif

/* Gate states (torch_hook::LeaseState) */
#define RELEASED 0
#define ACQUIRING 1
#define HOLDING 2
#define YIELDING 3

/* LeaseState phases (client::LeaseState::Phase) */
#define IDLE 0
#define WAITING 1
#define GRANTED 2

mtype = { GRANT, REVOKE, EVICT, ACQUIRE, RELEASE, REPORT };

chan to_client = [4] of { mtype };
chan to_broker = [4] of { mtype };

/* gate */
byte gstate = RELEASED;
bool gopen = false;
byte in_flight = 0;
bool gate_lock = false;   /* Gate::mutex_ */

/* connection */
byte phase = IDLE;
bool revoke_pending = false;

/* arena: one segment, resident with current backup at the start */
bool arena_lock = false;  /* Arena's mutex */
bool mapped = true;
bool copying = false;
bool bcur = true;
byte dev = 0;
byte bak = 0;
byte writes = 0;
bool user_done = false;

inline lock(l) { atomic { !l -> l = true } }
inline unlock(l) { l = false }

/* Arena::restore_all, on the acquirer's (user) thread */
inline restore_all() {
  lock(arena_lock);
  if
  :: !mapped -> mapped = true; dev = bak; bcur = true
  :: else -> skip
  fi;
  unlock(arena_lock)
}

/* Arena::offload(everything), on the I/O thread */
inline offload() {
  lock(arena_lock);
  if
  :: mapped ->
     if
     :: !bcur -> copying = true; bak = dev; copying = false; bcur = true
     :: else -> skip  /* clean: the backup is current */
     fi;
     assert(bak == writes);  /* every write before the offload is in its backup */
     mapped = false
  :: else -> skip
  fi;
  unlock(arena_lock)
}

/* LeaseController::acquire: need, wait for the grant, restore */
inline acquire() {
  atomic { phase = WAITING; to_broker ! ACQUIRE };
  phase == GRANTED;
  restore_all()
}

/* Gate::enter: count in, then look at open_ (both seq_cst); the slow path
   waits for the lease, acquiring it when released */
inline gate_enter() {
  in_flight++;
  if
  :: gopen -> skip
  :: else ->
     in_flight--;  /* enter_slow: not in flight while waiting */
     lock(gate_lock);
     do
     :: gstate == HOLDING && gopen -> in_flight++; unlock(gate_lock); break
     :: gstate == RELEASED ->
        gstate = ACQUIRING;
        unlock(gate_lock);
        acquire();
        lock(gate_lock);
        gstate = HOLDING;
        gopen = true
     :: gstate == ACQUIRING || gstate == YIELDING ->
        /* changed_.wait: let go of the lock until the state changes */
        unlock(gate_lock);
        (gstate == HOLDING || gstate == RELEASED);
        lock(gate_lock)
     od
  fi
}

inline gate_exit() { in_flight-- }

/* Arena::malloc of a block in the segment; the arena marks it written */
inline arena_malloc() {
  lock(arena_lock);
  /* allocates only under the held lease (a yield may be draining), on resident memory */
  assert((gstate == HOLDING || gstate == YIELDING) && mapped);
  bcur = false;
  unlock(arena_lock)
}

proctype user() {
  byte i = 0;
  do
  :: i < OPS ->
#ifdef ALLOC
     /* ArenaCpuAllocator::allocate outside any operator (a wrapped scalar) */
#ifdef RACY_ALLOC
     gate_enter(); gate_exit(); arena_malloc();
#else
     gate_enter(); arena_malloc(); gate_exit();
#endif
#endif
     gate_enter();
     /* the op: its kernel writes the segment */
     assert(mapped && !copying);
     dev++;
     writes++;
     /* DirtyTracker marks the written storage before the gate is let go */
     lock(arena_lock); bcur = false; unlock(arena_lock);
     gate_exit();
     i++
  :: else -> break
  od;
  atomic {
    /* the program's memory holds every write, resident or in its backup */
    assert((mapped && dev == writes) || (!mapped && bak == writes));
    user_done = true
  }
}

/* LeaseController::monitor_loop + yield_now */
proctype monitor() {
end:
  do
  :: revoke_pending && gstate == HOLDING ->
     revoke_pending = false;
     /* close_and_drain */
     lock(gate_lock);
     if
     :: gstate == HOLDING ->
        gstate = YIELDING;
        gopen = false;
        unlock(gate_lock);
        in_flight == 0;
        /* synchronize_device, then release (sent before the gate is released) */
        atomic { phase = IDLE; to_broker ! RELEASE };
        lock(gate_lock);
        gstate = RELEASED;
        gopen = false;
        unlock(gate_lock)
     :: else -> unlock(gate_lock)
     fi
  od
}

/* BrokerClient's I/O thread with LeaseController's handlers */
proctype io() {
  bool quiescent;
end:
  do
  :: to_client ? GRANT ->
     if
     :: phase == WAITING -> phase = GRANTED
     :: else -> skip  /* stale grant */
     fi
  :: to_client ? REVOKE -> revoke_pending = true
  :: to_client ? EVICT ->
     lock(gate_lock);
#ifdef RACY_EVICT
     quiescent = (gstate == RELEASED || gstate == ACQUIRING);
#else
     quiescent = ((gstate == RELEASED || gstate == ACQUIRING) && phase != GRANTED);
#endif
     if
     :: quiescent -> offload()
     :: else -> skip
     fi;
     unlock(gate_lock);
     to_broker ! REPORT
  od
}

/* The arbiter, as this client sees it. A bounded number of evicts and
   revokes keeps the state space small. */
proctype broker() {
  bool holds = false;
  bool waiting = false;
  byte evicts = 0;
  byte revokes = 0;
end:
  do
  :: to_broker ? ACQUIRE -> waiting = true
  :: to_broker ? RELEASE -> holds = false
  :: to_broker ? REPORT ->
     /* apply_residency: a report it cannot account for asks the bytes back,
        from a holder too */
     if
     :: holds && evicts < 2 && len(to_client) < 4 -> evicts++; to_client ! EVICT
     :: else -> skip
     fi
  :: waiting && len(to_client) < 4 -> waiting = false; holds = true; to_client ! GRANT
  :: !holds && evicts < 2 && len(to_client) < 4 -> evicts++; to_client ! EVICT  /* make room for another */
  :: holds && revokes < 2 && len(to_client) < 4 -> revokes++; to_client ! REVOKE
  od
}

init {
  atomic {
    run user();
    run monitor();
    run io();
    run broker()
  }
}

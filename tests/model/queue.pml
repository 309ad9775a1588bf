/* A model of ratequeue's line for one resource with a concurrency limit of 1,
 * checked with spin (tests/model/check). It follows src/queue.cpp,
 * src/head.cpp, src/line_free.cpp and src/process_table.cpp at the level of
 * their shared words:
 *   - the ticket claim: a CAS on the tail slot names the ticket and its
 *     owner, then the tail is bumped (anyone who sees a claimed tail slot
 *     helps bump it);
 *   - the sleep handshake of a waiter (publish SLEEPING, then read the head
 *     word again) against a passer (move the head word, then read the slot);
 *   - pass_head: the head word moves past finished tickets (DONE, ABANDONED)
 *     and grants the next one, waking it if it sleeps;
 *   - the head taking the permit under the resource lock, or sleeping
 *     (HEADSLEEP, the same handshake) until a release wakes it;
 *   - the line-free path: seeing nobody in line (head == tail and the tail
 *     slot unclaimed), then under the lock looking at the line again;
 *   - a crash: any process may stop at any step (at most MAXCRASH of them);
 *     then the reclaim (what a watcher or a passer does when it hears of the
 *     death): its lock is broken, its permit given back exactly once, its
 *     ticket abandoned by one CAS and, if it was the head, passed on.
 * Checked: the permit is never held twice (assert), a ticket is granted only
 * when every earlier ticket is finished (FIFO, assert), and no live process
 * is left waiting forever (spin's invalid end states: a lost wake-up or a
 * stalled line shows as a deadlock).
 * Not modelled: rate limits and their CAS charges (charge.hpp), several
 * resources, ticket wrap-around of the ring, serve_behind, timeouts and
 * cancels (abandon by the owner: the same CAS as the reclaim's), the watch
 * selection of whom a sleeper watches (the reclaimer stands for any watcher),
 * the process-slot generation that guards reclaim against slot reuse, and
 * the many-hosts lease. */

#define NP 3          /* processes, one acquire each (the reclaimer's guard names them) */
#ifndef MAXCRASH
#define MAXCRASH 1
#endif
#define NT (NP + 1)   /* tickets: at most one each, and the tail's unclaimed slot */
#define NOBODY 255

mtype = { FREE, WAITING, SLEEPING, HEAD, HEADSLEEP, DONE, ABANDONED };

mtype slot[NT];
byte owner[NT];
byte head = 0;
byte tail = 0;
byte avail = 1;            /* the concurrency limit: free permits */
byte lock = NOBODY;        /* the resource lock, owned by a process slot */
bool dead[NP];
bool holds[NP];            /* holds the permit (alive or not) */
byte holders = 0;          /* permits out, live or dead, not yet given back */
byte crashes = 0;
byte gone = 0;             /* processes that finished or died */
bool needs[NP];            /* dead, not yet reclaimed */

/* The resource lock: free, or owned by a dead process (whoever finds that
 * breaks it: lock.cpp's owner check; the undo journal that makes a half-done
 * change whole is modelled by making each change under the lock one step). */
#define LOCKABLE (lock == NOBODY || (lock < NP && dead[lock]))
/* The head names a claimed ticket of a dead process: the waiter behind it
 * hears of the death (it watches the process ahead) and passes it on. */
#define HEADSTUCK (head < NT && slot[head] != FREE && owner[head] < NP && dead[owner[head]])

/* A crash: the process stops here, for good. */
inline maybe_crash() {
  if
  :: atomic { crashes < MAXCRASH -> crashes++; dead[me] = true; needs[me] = true; gone++ }; goto stopped
  :: true -> skip
  fi
}

/* pass_head(from): move the head word past ticket `from`, then past every
 * finished ticket after it, and grant the next claimed one (waking it if it
 * sleeps). Each CAS is one step; a crash may come between any two. */
inline pass_head(from) {
  x = from;
  do
  :: atomic {
       if
       :: head == x -> head = x + 1; moved = true
       :: else -> moved = false
       fi
     };
     if
     :: !moved -> break
     :: else -> skip
     fi;
     x = x + 1;
     if
     :: x >= tail -> break     /* nobody queued (a later claimer sees head == its ticket) */
     :: else -> skip
     fi;
     atomic {
       if
       :: slot[x] == DONE || slot[x] == ABANDONED -> skipit = true
       :: slot[x] == WAITING || slot[x] == SLEEPING -> slot[x] = HEAD; skipit = false
       :: else -> skipit = false   /* already head, or not claimed yet: its owner sees head == x */
       fi
     };
     if
     :: skipit -> skip           /* move on past it */
     :: else -> break
     fi
  od
}

/* release: under the lock give the permit back, then wake a head that sleeps for it. */
inline release() {
  atomic { LOCKABLE -> lock = me };
  maybe_crash();
  atomic { avail++; holds[me] = false; holders-- };
  lock = NOBODY;
  maybe_crash();
  atomic {
    if
    :: head < tail && slot[head] == HEADSLEEP -> slot[head] = HEAD   /* the wake */
    :: else -> skip
    fi
  }
}

proctype P(byte me) {
  byte t, x, h;
  bool moved, skipit, took;

  /* ---- the line-free path: nobody in line, then the lock, then look again ---- */
  if
  :: true ->
     h = head;
     if
     :: h == tail && slot[tail] == FREE ->
        atomic { LOCKABLE -> lock = me };
        maybe_crash();
        atomic {
          if
          :: head == tail && slot[tail] == FREE && avail > 0 ->
             avail--; holds[me] = true; holders++; took = true;
             assert(holders <= 1);
             /* FIFO: nobody alive is in line ahead of a line-free take */
             x = 0;
             do
             :: x < NT -> assert(!(slot[x] == WAITING || slot[x] == SLEEPING || slot[x] == HEAD ||
                                   slot[x] == HEADSLEEP) || dead[owner[x]]); x++
             :: else -> break
             od
          :: else -> took = false
          fi
        };
        lock = NOBODY;
        maybe_crash();
        if
        :: took -> goto holding
        :: else -> skip
        fi
     :: else -> skip
     fi
  :: true -> skip       /* (a process may also go straight to the line) */
  fi;

  /* ---- enqueue: claim the tail slot, then bump the tail (or see it helped) ---- */
claim:
  atomic {
    t = tail;
    if
    :: slot[t] == FREE -> slot[t] = WAITING; owner[t] = me
    :: else -> tail++; goto claim   /* claimed, its bump not in yet: help */
    fi
  };
  maybe_crash();
  atomic {
    if
    :: tail == t -> tail++
    :: else -> skip       /* a helper bumped it */
    fi
  };
  maybe_crash();

  /* ---- wait_turn ---- */
wait:
  if
  :: head == t ->
     atomic { if :: slot[t] == WAITING -> slot[t] = HEAD :: else -> skip fi }
  :: else ->
     atomic { if :: slot[t] == WAITING -> slot[t] = SLEEPING :: else -> skip fi };
     maybe_crash();
     if
     :: head == t ->       /* the Dekker re-read: we are head after all */
        atomic { if :: slot[t] == SLEEPING || slot[t] == WAITING -> slot[t] = HEAD :: else -> skip fi }
     :: else ->
        (slot[t] != SLEEPING);   /* the futex sleep: until a passer grants */
        maybe_crash();
        goto wait
     fi
  fi;
  assert(slot[t] == HEAD);
  maybe_crash();

  /* ---- the head: take the permit under the lock, or sleep until a release ---- */
head_turn:
  atomic { LOCKABLE -> lock = me };
  maybe_crash();
  atomic {
    if
    :: avail > 0 ->
       avail--; holds[me] = true; holders++; took = true;
       assert(holders <= 1);
       /* FIFO: every earlier ticket is finished */
       x = 0;
       do
       :: x < t -> assert(slot[x] == DONE || slot[x] == ABANDONED); x++
       :: else -> break
       od
    :: else -> took = false
    fi
  };
  lock = NOBODY;
  maybe_crash();
  if
  :: took ->
     atomic { slot[t] = DONE };
     maybe_crash();
     pass_head(t)
  :: else ->
     atomic { if :: slot[t] == HEAD -> slot[t] = HEADSLEEP :: else -> skip fi };
     maybe_crash();
     if
     :: avail > 0 -> atomic { if :: slot[t] == HEADSLEEP -> slot[t] = HEAD :: else -> skip fi }  /* re-read */
     :: else -> (slot[t] != HEADSLEEP)       /* sleep until a release wakes us */
     fi;
     maybe_crash();
     goto head_turn
  fi;
  maybe_crash();

holding:
  maybe_crash();
  release();
  gone++;
stopped:
  skip
}

/* The reclaim: whoever hears of a death (a watcher woken by the kernel, a
 * passer, rq_reap) does this, in steps; it stands for all of them and never
 * dies itself. It runs only when there is a death to handle, so a live
 * process left waiting forever is a deadlock spin reports. */
proctype Reclaimer() {
  byte p, x;
  bool moved, skipit;
  byte me = NP;   /* its own lock identity */
  do
  :: atomic { !needs[0] && !needs[1] && !needs[2] && gone == NP && !(lock < NP && dead[lock]) && !HEADSTUCK -> break }
  :: atomic {   /* one CAS from the word it read when it found the owner dead */
       HEADSTUCK -> x = head;
       if :: slot[x] != DONE && slot[x] != ABANDONED -> slot[x] = ABANDONED :: else -> skip fi
     };
     pass_head(x)
  :: needs[0] || needs[1] || needs[2] ->
     p = 0;
     do
     :: p < NP && !needs[p] -> p++
     :: p < NP && needs[p] -> break
     :: p >= NP -> break
     od;
     if
     :: p < NP ->
        /* its permit, exactly once, under the lock */
        atomic { LOCKABLE -> lock = me };
        atomic { if :: holds[p] -> avail++; holds[p] = false; holders-- :: else -> skip fi };
        lock = NOBODY;
        /* its tickets: abandoned by one CAS; a head is passed on */
        x = 0;
        do
        :: x < NT ->
           if
           :: owner[x] == p && (slot[x] == WAITING || slot[x] == SLEEPING || slot[x] == HEAD || slot[x] == HEADSLEEP) ->
              atomic { if :: slot[x] != DONE && slot[x] != ABANDONED && slot[x] != FREE -> slot[x] = ABANDONED :: else -> skip fi };
              if :: head == x -> pass_head(x) :: else -> skip fi
           :: owner[x] == p && (slot[x] == DONE || slot[x] == ABANDONED) && head == x ->
              pass_head(x)          /* died between its DONE and its pass */
           :: else -> skip
           fi;
           x++
        :: else -> break
        od;
        /* the death notice: whoever slept watching it wakes and looks again */
        atomic {
          if
          :: head < NT && slot[head] == SLEEPING -> slot[head] = HEAD
          :: head < NT && slot[head] == HEADSLEEP -> slot[head] = HEAD
          :: else -> skip
          fi
        };
        needs[p] = false
     :: else -> skip
     fi
  od
}

init {
  byte i;
  atomic {
    i = 0;
    do
    :: i < NT -> slot[i] = FREE; owner[i] = NOBODY; i++
    :: else -> break
    od;
    i = 0;
    do
    :: i < NP -> run P(i); i++
    :: else -> break
    od;
    run Reclaimer()
  }
}

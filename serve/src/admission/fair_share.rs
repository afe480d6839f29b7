//! Fair shares of the admission slots across connections: how many each connection holds, and which calls wait
//! for the next slot freed.
//!
//! First come, first served is unfair to an honest caller when other clients never read their replies: those hold
//! every slot for `--send-timeout` and ask again every moment, so each slot the timeout frees is theirs again
//! before the honest caller's retry comes. So once every slot is taken, a call from a connection holding (or
//! waiting for) fewer slots than its share waits for the next slot freed, while one from a connection at or over
//! its share is refused at once, as before. A connection's share is the limit divided by the connections holding
//! or waiting for slots (at least one). A freed slot goes to the waiting call whose connection holds the fewest
//! slots, the earliest first among equals. Nobody waits while a slot is free, so a connection alone may still take
//! every slot. (Record: `docs/decisions/0035-fair-admission.md`.)
//!
//! Time plays no part here: how long a call may wait is the caller's ([`super::Admission::admit`]).

use std::{collections::VecDeque, net::SocketAddr};

use rustc_hash::FxHashMap;

/// A connection, as admission tells connections apart: its peer's address (`None` for calls that came on no TCP
/// connection, as in unit tests).
pub(super) type Peer = Option<SocketAddr>;

/// Who holds the slots and who waits for one. `W` is what wakes a waiting call (a channel's sender).
#[derive(Debug)]
pub(super) struct Slots<W> {
    /// Slots taken, by calls running or replies not yet sent.
    in_flight: usize,
    /// Every connection holding or waiting for a slot (and only those: an entry leaves with its last slot and
    /// wait, so the map's length is the number of connections that want slots).
    connections: FxHashMap<Peer, Holding>,
    /// The waiting calls, in order of arrival.
    waiting: VecDeque<Waiting<W>>,
    /// The next waiting call's number, by which it leaves the queue when it gives up.
    next_ticket: u64,
}

/// One connection's slots and waiting calls.
#[derive(Debug, Default, Clone, Copy)]
struct Holding {
    held: usize,
    waiting: usize,
}

#[derive(Debug)]
struct Waiting<W> {
    ticket: u64,
    peer: Peer,
    wake: W,
}

/// What a call that found no free slot is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Full {
    /// Its connection is under its share: it may wait, with this ticket.
    Wait(u64),
    /// Its connection holds (or waits for) `share` slots or more already, or the queue is full of calls from
    /// connections that want no more than it does.
    Refuse { held: usize, share: usize },
}

impl<W> Default for Slots<W> {
    fn default() -> Self {
        Self { in_flight: 0, connections: FxHashMap::default(), waiting: VecDeque::new(), next_ticket: 0 }
    }
}

impl<W> Slots<W> {
    /// Slots taken.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Calls waiting.
    pub(super) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Takes a slot for a call from `peer` if one is free under `limit` and no call waits for it.
    pub(super) fn take(&mut self, peer: Peer, limit: usize) -> bool {
        if self.in_flight >= limit || !self.waiting.is_empty() {
            return false;
        }
        self.in_flight += 1;
        self.connections.entry(peer).or_default().held += 1;
        true
    }

    /// A call from `peer` found no free slot: queues it (to be woken through `wake`) if its connection is under its
    /// share of `limit`, or says why not. At most `max_waiting` calls wait: when that many do, a newcomer takes the
    /// place of the latest waiting call of the connection that holds and waits for the most, if that is at least
    /// two more than the newcomer's (its waker is dropped: the call is refused); otherwise the newcomer is refused.
    pub(super) fn wait(&mut self, peer: Peer, limit: usize, max_waiting: usize, wake: W) -> Full {
        let holding = self.connections.get(&peer).copied().unwrap_or_default();
        let wanting = self.connections.len() + usize::from(!self.connections.contains_key(&peer));
        let share = (limit / wanting).max(1);
        let wants = holding.held + holding.waiting;
        if wants >= share {
            return Full::Refuse { held: holding.held, share };
        }
        if self.waiting.len() >= max_waiting {
            let connections = &self.connections;
            let wants_of = |w: &Waiting<W>| connections.get(&w.peer).map_or(0, |h| h.held + h.waiting);
            // `max_by_key` keeps the last of equals: the latest.
            let richest = self.waiting.iter().enumerate().max_by_key(|(_, w)| wants_of(w));
            match richest {
                Some((at, w)) if wants_of(w) > wants + 1 => {
                    if let Some(displaced) = self.waiting.remove(at) {
                        self.update(displaced.peer, |h| h.waiting -= 1);
                    }
                }
                _ => return Full::Refuse { held: holding.held, share },
            }
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.connections.entry(peer).or_default().waiting += 1;
        self.waiting.push_back(Waiting { ticket, peer, wake });
        Full::Wait(ticket)
    }

    /// A waiting call gave up: out of the queue, if it is still there (false if it was handed a slot meanwhile).
    pub(super) fn leave(&mut self, ticket: u64) -> bool {
        let Some(at) = self.waiting.iter().position(|w| w.ticket == ticket) else { return false };
        if let Some(left) = self.waiting.remove(at) {
            self.update(left.peer, |h| h.waiting -= 1);
        }
        true
    }

    /// A call from `peer` gave its slot back.
    pub(super) fn release(&mut self, peer: Peer) {
        self.in_flight -= 1;
        self.update(peer, |h| h.held -= 1);
    }

    /// Hands the slots free under `limit` to waiting calls, those of the connections holding the fewest slots
    /// first: their wakers, each with its connection and the slots taken once it had its own. Allocates nothing
    /// when nobody waits.
    pub(super) fn hand_over(&mut self, limit: usize) -> Vec<(W, Peer, usize)> {
        let mut woken = Vec::new();
        while self.in_flight < limit && !self.waiting.is_empty() {
            let connections = &self.connections;
            let held = |w: &Waiting<W>| connections.get(&w.peer).map_or(0, |h| h.held);
            // `min_by_key` keeps the first of equals: the earliest.
            let Some((next, _)) = self.waiting.iter().enumerate().min_by_key(|(_, w)| held(w)) else { break };
            let Some(next) = self.waiting.remove(next) else { break };
            self.update(next.peer, |h| {
                h.waiting -= 1;
                h.held += 1;
            });
            self.in_flight += 1;
            woken.push((next.wake, next.peer, self.in_flight));
        }
        woken
    }

    /// Changes `peer`'s holding; forgets the connection once it holds and waits for nothing.
    fn update(&mut self, peer: Peer, change: impl FnOnce(&mut Holding)) {
        if let Some(holding) = self.connections.get_mut(&peer) {
            change(holding);
            if holding.held == 0 && holding.waiting == 0 {
                self.connections.remove(&peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> Peer {
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn a_connection_alone_takes_every_slot_and_waits_for_none() {
        let mut slots = Slots::<()>::default();
        for _ in 0..4 {
            assert!(slots.take(peer(1), 4));
        }
        assert!(!slots.take(peer(1), 4), "the limit holds");
        assert_eq!(slots.wait(peer(1), 4, 4, ()), Full::Refuse { held: 4, share: 4 }, "at its share: refused");
        slots.release(peer(1));
        assert!(slots.take(peer(1), 4), "freed, and nobody waits");
    }

    #[test]
    fn under_its_share_a_connection_waits_and_gets_the_next_slot_freed() {
        let mut slots = Slots::default();
        for _ in 0..4 {
            assert!(slots.take(peer(1), 4));
        }
        // Two connections want slots: a share of 2 each.
        assert_eq!(slots.wait(peer(2), 4, 4, "first"), Full::Wait(0));
        assert_eq!(slots.wait(peer(2), 4, 4, "second"), Full::Wait(1));
        assert_eq!(slots.wait(peer(2), 4, 4, "third"), Full::Refuse { held: 0, share: 2 }, "two waiting: its share");
        assert_eq!(slots.wait(peer(1), 4, 4, "over"), Full::Refuse { held: 4, share: 2 });
        assert!(!slots.take(peer(3), 4), "no slot is free");
        slots.release(peer(1));
        assert!(!slots.take(peer(1), 4), "a freed slot goes to the waiting call, not to a newcomer");
        assert_eq!(slots.hand_over(4), [("first", peer(2), 4)]);
        assert_eq!(slots.hand_over(4), [], "nothing free");
        slots.release(peer(1));
        assert_eq!(slots.hand_over(4), [("second", peer(2), 4)]);
        assert_eq!((slots.in_flight(), slots.waiting()), (4, 0));
    }

    #[test]
    fn the_connection_holding_fewest_slots_goes_first_then_the_earliest() {
        let mut slots = Slots::default();
        for p in [1, 1, 2, 3] {
            assert!(slots.take(peer(p), 4));
        }
        // Five connections want slots: a share of 1; connection 4 holds none, 2 and 3 one each.
        assert_eq!(slots.wait(peer(4), 4, 8, 4), Full::Wait(0));
        assert_eq!(slots.wait(peer(5), 4, 8, 5), Full::Wait(1));
        assert!(matches!(slots.wait(peer(2), 4, 8, 2), Full::Refuse { held: 1, share: 1 }));
        slots.release(peer(1));
        slots.release(peer(1));
        let woken: Vec<_> = slots.hand_over(4).into_iter().map(|(w, ..)| w).collect();
        assert_eq!(woken, [4, 5]);
        // A limit of 6, connection 1 holding 4 slots, 2 and 3 one each: 2 waits (a share of 2 among three), then
        // 4 (a share of 1 among four). A freed slot goes to 4, which holds none, though 2 came first.
        let mut slots = Slots::default();
        for p in [1, 1, 1, 1, 2, 3] {
            assert!(slots.take(peer(p), 6));
        }
        assert_eq!(slots.wait(peer(2), 6, 8, 2), Full::Wait(0));
        assert_eq!(slots.wait(peer(4), 6, 8, 4), Full::Wait(1));
        slots.release(peer(1));
        assert_eq!(slots.hand_over(6), [(4, peer(4), 6)]);
        slots.release(peer(1));
        assert_eq!(slots.hand_over(6), [(2, peer(2), 6)]);
    }

    #[test]
    fn the_queue_is_bounded_and_a_call_that_gives_up_leaves_it() {
        let mut slots = Slots::default();
        assert!(slots.take(peer(1), 1));
        assert_eq!(slots.wait(peer(2), 1, 2, 'a'), Full::Wait(0));
        assert_eq!(slots.wait(peer(3), 1, 2, 'b'), Full::Wait(1));
        assert!(matches!(slots.wait(peer(4), 1, 2, 'c'), Full::Refuse { .. }), "two wait already");
        assert!(slots.leave(0));
        assert!(!slots.leave(0), "gone already");
        assert_eq!(slots.wait(peer(4), 1, 2, 'c'), Full::Wait(2));
        slots.release(peer(1));
        assert_eq!(slots.hand_over(1), [('b', peer(3), 1)]);
        assert!(!slots.leave(1), "handed a slot: not waiting any more");
        slots.release(peer(3));
        assert_eq!(slots.hand_over(1), [('c', peer(4), 1)]);
        slots.release(peer(4));
        // A full queue of one connection's calls: a connection wanting fewer takes the latest one's place.
        let mut slots = Slots::default();
        for _ in 0..4 {
            assert!(slots.take(peer(1), 4));
        }
        assert_eq!(slots.wait(peer(2), 4, 2, 'a'), Full::Wait(0), "a share of 2 among two");
        assert_eq!(slots.wait(peer(2), 4, 2, 'b'), Full::Wait(1));
        assert_eq!(slots.wait(peer(3), 4, 2, 'c'), Full::Wait(2), "connection 2 wants two, 3 none: 'b' goes");
        assert!(matches!(slots.wait(peer(4), 4, 2, 'd'), Full::Refuse { .. }), "2 and 3 want one each, as 4 would");
        slots.release(peer(1));
        slots.release(peer(1));
        assert_eq!(slots.hand_over(4), [('a', peer(2), 3), ('c', peer(3), 4)]);
        slots.release(peer(1));
        slots.release(peer(1));
        slots.release(peer(2));
        slots.release(peer(3));
        assert_eq!((slots.in_flight(), slots.waiting(), slots.connections.len()), (0, 0, 0), "nothing left behind");
    }
}

//! A circuit breaker for a server reelrank depends on (the database, Redis).
//!
//! While such a server is unreachable, every call would wait for its full timeout before failing,
//! and a load balancer retrying on another replica would wait twice, past clients' own timeouts.
//! The breaker refuses calls at once after one found the server unreachable, and lets one through
//! per back-off period to find out whether it is back.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refuses calls for a back-off period after one found its server unreachable; see the module.
#[derive(Debug)]
pub struct Breaker {
    back_off: Duration,
    /// Until when calls are refused; `None` while the server answers.
    refusing_until: Mutex<Option<Instant>>,
}

impl Breaker {
    /// A closed breaker that, once opened, refuses calls for `back_off` at a time.
    pub fn new(back_off: Duration) -> Breaker {
        Breaker { back_off, refusing_until: Mutex::new(None) }
    }

    /// Runs `call` unless the breaker refuses it (then the error is `refused()`), and records
    /// whether it reached the server as `reached` reads its answer (`None`: the answer says
    /// neither, and the breaker is left as it is).
    pub async fn guard<T, E>(
        &self,
        call: impl Future<Output = Result<T, E>>,
        reached: impl FnOnce(&Result<T, E>) -> Option<bool>,
        refused: impl FnOnce() -> E,
    ) -> Result<T, E> {
        if !self.admit(Instant::now()) {
            return Err(refused());
        }
        let answer = call.await;
        if let Some(reached) = reached(&answer) {
            self.record(reached, Instant::now());
        }
        answer
    }

    /// Whether a call at `now` may go to the server: always while it answers; once per back-off
    /// period after it did not (that call is the probe; the others are refused until the next
    /// period or until the probe's answer closes the breaker).
    pub fn admit(&self, now: Instant) -> bool {
        let mut until = self.refusing_until.lock().expect("breaker lock");
        match *until {
            Some(at) if now < at => false,
            Some(_) => {
                *until = Some(now + self.back_off);
                true
            }
            None => true,
        }
    }

    /// Takes the outcome of an admitted call at `now`: one that reached the server (even to be
    /// refused by it) closes the breaker, one that found it unreachable opens it.
    pub fn record(&self, reached: bool, now: Instant) {
        let mut until = self.refusing_until.lock().expect("breaker lock");
        *until = (!reached).then(|| now + self.back_off);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_refuses_after_a_failure_and_lets_one_probe_through_a_period() {
        let back_off = Duration::from_secs(1);
        let breaker = Breaker::new(back_off);
        let start = Instant::now();
        assert!(breaker.admit(start));
        breaker.record(false, start);
        assert!(!breaker.admit(start + back_off / 2));
        assert!(breaker.admit(start + back_off), "the probe");
        assert!(!breaker.admit(start + back_off), "the others wait for it");
        assert!(!breaker.admit(start + back_off * 3 / 2));
        assert!(breaker.admit(start + back_off * 2), "a probe per period while it has no answer");
        breaker.record(true, start + back_off * 2);
        assert!(breaker.admit(start + back_off * 2) && breaker.admit(start + back_off * 2));
    }
}

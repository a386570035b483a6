//! The compact event the simulator generates, and its identifiers.
//!
//! Events stay plain integers until they leave the crate: the CSV writer formats them straight into
//! bytes, and [`crate::Simulation::run`] turns them into [`reelrank_core::Event`]s. Both spell the
//! identifiers through the same functions here, so the two outputs agree.

use reelrank_core::{Event, EventContext, EventKind, Timestamp};

use crate::Simulation;

/// The surface an impression was served on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Page {
    /// The main recommendation feed.
    Feed,
    /// The series player: next episode after a finish, or "continue watching".
    Series,
}

impl Page {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Page::Feed => "feed",
            Page::Series => "series",
        }
    }
}

/// One generated event. The day is implied by the batch it travels in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SimEvent {
    pub ts: i64,
    pub user: u32,
    pub item: u32,
    /// Position among the user's events of the day; with the day and user it makes the event id.
    pub seq: u32,
    /// Milliseconds watched, for `watch` events.
    pub value_ms: u32,
    /// Session of the day and position in it: with the day and user they make the request id.
    pub session: u16,
    pub pos: u16,
    pub kind: EventKind,
    pub page: Page,
}

impl SimEvent {
    /// The total order of a day's events: by time, ties by user, then by generation order.
    pub(crate) fn order_key(&self) -> (i64, u32, u32) {
        (self.ts, self.user, self.seq)
    }

    /// Writes `e{day}-{user}-{seq}`.
    pub(crate) fn write_event_id(&self, day: u32, out: &mut Vec<u8>) {
        write_id(out, b'e', &[day.into(), self.user.into(), self.seq.into()]);
    }

    /// Writes `r{day}-{user}-{session}-{pos}`: one id per impression, shared by its outcomes.
    pub(crate) fn write_request_id(&self, day: u32, out: &mut Vec<u8>) {
        write_id(out, b'r', &[day.into(), self.user.into(), self.session.into(), self.pos.into()]);
    }

    /// The value column: milliseconds for `watch`, nothing otherwise.
    pub(crate) fn value(&self) -> Option<u32> {
        (self.kind == EventKind::Watch).then_some(self.value_ms)
    }

    /// Converts to the data model's event.
    pub(crate) fn to_event(self, day: u32, sim: &Simulation) -> Event {
        let text = |write: &dyn Fn(&mut Vec<u8>)| {
            let mut buf = Vec::with_capacity(24);
            write(&mut buf);
            String::from_utf8(buf).expect("ids are ASCII")
        };
        Event {
            event_id: Some(text(&|b| self.write_event_id(day, b))),
            user_id: sim.users()[self.user as usize].user_id.clone(),
            item_id: sim.items()[self.item as usize].item_id.clone(),
            kind: self.kind,
            value: self.value().map(f64::from),
            ts: Timestamp(self.ts),
            request_id: Some(text(&|b| self.write_request_id(day, b))),
            variant: None,
            context: Some(EventContext {
                device: Some(sim.device_of(self.user as usize).to_owned()),
                page: Some(self.page.as_str().to_owned()),
                hour: Some(sim.local_hour(self.user as usize, self.ts)),
            }),
        }
    }
}

/// Writes `{prefix}{a}-{b}-...`, the shape of every generated id (`u12`, `e3-12-40`).
pub(crate) fn write_id(out: &mut Vec<u8>, prefix: u8, parts: &[u64]) {
    let mut digits = itoa::Buffer::new();
    out.push(prefix);
    for (i, &part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b'-');
        }
        out.extend_from_slice(digits.format(part).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_their_shape() {
        let e = SimEvent {
            ts: 0,
            user: 12,
            item: 3,
            seq: 40,
            value_ms: 0,
            session: 2,
            pos: 7,
            kind: EventKind::Like,
            page: Page::Feed,
        };
        let mut buf = Vec::new();
        e.write_event_id(3, &mut buf);
        buf.push(b' ');
        e.write_request_id(3, &mut buf);
        assert_eq!(buf, b"e3-12-40 r3-12-2-7");
        assert_eq!(e.value(), None);
    }
}

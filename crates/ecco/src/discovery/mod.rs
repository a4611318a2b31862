//! What the node knows of other agents, and the signed announcements that
//! tell it. Both are free of I/O: time is passed in (milliseconds since the
//! Unix epoch), so the rules are tested deterministically.

mod announcement;
pub mod dht;
mod directory;
mod offers;

pub use announcement::{Announcement, AnnouncementError, DOMAIN, SignedAnnouncement, limits};
pub use directory::{Directory, Entry, Snapshot, Source, Update};
pub use offers::{Found, Offers};

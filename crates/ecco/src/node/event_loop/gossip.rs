//! Capability announcements over gossipsub, and the directory they feed.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ecco_core::{Capability, CapabilityDocument};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};

use super::EventLoop;
use crate::Identity;
use crate::discovery::{
    Announcement, AnnouncementError, Directory, SignedAnnouncement, Source, Update,
};
use crate::node::NodeError;
use crate::node::config::Config;
use crate::node::handle::Event;

/// How often expiry is checked and a pending announcement is sent.
pub(super) const TICK: Duration = Duration::from_millis(250);
/// Announcements triggered by newcomers are at most this frequent.
const MIN_ANNOUNCE_GAP: Duration = Duration::from_millis(200);
/// Capability fetches are answered with the latest signed announcement if
/// it is this recent: a peer fetching in a loop must not make this node sign
/// thousands a second, nor run its sequence numbers (which start at the
/// clock in ms) ahead of the clock, where they would make it look stale
/// after a restart.
const FETCH_ANSWER_REUSE: Duration = Duration::from_secs(1);

pub(super) struct State {
    identity: Identity,
    pub(super) mesh: String,
    topic: IdentTopic,
    pub(super) directory: Directory,
    /// What this node offers, validated once when set; `None` until then.
    pub(super) document: Option<CapabilityDocument>,
    /// Starts at the wall clock in ms so that it keeps growing across restarts.
    seq: u64,
    ttl: Duration,
    reannounce_every: Duration,
    last_announced: Option<Instant>,
    /// A newcomer subscribed, or the capabilities changed, since the last announcement.
    announce_pending: bool,
    /// The latest signed announcement of `document`, and when it was signed.
    signed: Option<(Vec<u8>, Instant)>,
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl State {
    pub(super) fn new(identity: &Identity, config: &Config, topic: IdentTopic) -> Self {
        Self {
            identity: identity.clone(),
            mesh: config.mesh.clone(),
            topic,
            directory: Directory::new(
                config.limits.max_directory_peers,
                config.limits.max_directory_bytes,
            ),
            document: None,
            seq: now_ms(),
            ttl: config.limits.announcement_ttl,
            reannounce_every: config.limits.reannounce_every,
            last_announced: None,
            announce_pending: false,
            signed: None,
        }
    }
}

impl EventLoop {
    pub(super) fn set_capabilities(
        &mut self,
        capabilities: Vec<Capability>,
    ) -> Result<(), NodeError> {
        // Validates count and uniqueness exactly as receivers will.
        let document =
            CapabilityDocument::new(capabilities).map_err(|e| NodeError::Config(e.to_string()))?;
        let had = self.gossip.document.is_some();
        self.gossip.document = (!document.capabilities().is_empty()).then_some(document);
        self.gossip.signed = None;
        if self.gossip.document.is_some() {
            self.announce();
        } else if had {
            // Offering nothing any more: say so, rather than go silent.
            self.withdraw();
        }
        self.publish_providers();
        Ok(())
    }

    pub(super) fn on_tick(&mut self) {
        let now = now_ms();
        for peer in self.gossip.directory.expire(now) {
            tracing::debug!(%peer, "capabilities expired");
            let _ = self.events.send(Event::CapabilitiesExpired(peer));
        }
        let due = self
            .gossip
            .last_announced
            .is_none_or(|at| at.elapsed() >= self.gossip.reannounce_every);
        if self.gossip.announce_pending || due {
            self.announce();
        }
    }

    /// Where peers reach this node changed (a listen address came or went,
    /// as when a wildcard listener finds its interfaces after `spawn`):
    /// announcements carry the addresses, so a new one goes out, and a
    /// capability fetch is no longer answered with the old one.
    pub(super) fn addresses_changed(&mut self) {
        self.gossip.signed = None;
        self.announce();
    }

    /// Signs and publishes this node's capabilities (nothing when it offers none).
    pub(super) fn announce(&mut self) {
        let g = &mut self.gossip;
        if g.document.is_none() || self.swarm.behaviour().gossipsub.as_ref().is_none() {
            g.announce_pending = false;
            return;
        }
        if g.last_announced
            .is_some_and(|at| at.elapsed() < MIN_ANNOUNCE_GAP)
        {
            g.announce_pending = true;
            return;
        }
        let Some(bytes) = self.sign_announcement() else {
            return;
        };
        self.gossip.last_announced = Some(Instant::now());
        self.gossip.announce_pending = false;
        self.publish(bytes);
    }

    /// This node's current capabilities as a newly signed announcement, with
    /// the next sequence number; `None` when it offers nothing.
    fn sign_announcement(&mut self) -> Option<Vec<u8>> {
        let document = self.gossip.document.clone()?;
        let bytes = self.sign(document);
        self.gossip.signed = Some((bytes.clone(), Instant::now()));
        Some(bytes)
    }

    /// What a capability fetch is answered with: the latest announcement if
    /// it is recent, else a new one; `None` when this node offers nothing.
    pub(super) fn fetch_answer(&mut self) -> Option<Vec<u8>> {
        self.gossip.document.as_ref()?;
        match &self.gossip.signed {
            Some((bytes, at)) if at.elapsed() < FETCH_ANSWER_REUSE => Some(bytes.clone()),
            _ => self.sign_announcement(),
        }
    }

    /// Signs `document` under the next sequence number.
    fn sign(&mut self, document: CapabilityDocument) -> Vec<u8> {
        let g = &mut self.gossip;
        g.seq += 1;
        let announcement = Announcement {
            peer: g.identity.peer_id(),
            mesh: g.mesh.clone(),
            seq: g.seq,
            issued_at_ms: now_ms(),
            ttl_secs: u32::try_from(g.ttl.as_secs()).unwrap_or(u32::MAX),
            addrs: self
                .swarm
                .external_addresses()
                .take(crate::discovery::limits::MAX_ADDRESSES)
                .cloned()
                .collect(),
            document,
        };
        announcement.sign(&self.gossip.identity).to_bytes()
    }

    /// Tells the mesh that this node offers nothing any more (it is leaving),
    /// so that others drop it at once rather than when its TTL runs out.
    /// Returns whether anything was published.
    pub(super) fn withdraw(&mut self) -> bool {
        if self.swarm.behaviour().gossipsub.as_ref().is_none() {
            return false;
        }
        let bytes = self.sign(CapabilityDocument::default());
        self.publish(bytes)
    }

    /// Publishes on the announcement topic; returns whether it was sent.
    pub(super) fn publish(&mut self, bytes: Vec<u8>) -> bool {
        let topic = self.gossip.topic.clone();
        let Some(gossipsub) = self.swarm.behaviour_mut().gossipsub.as_mut() else {
            return false;
        };
        match gossipsub.publish(topic, bytes) {
            Ok(_) => true,
            // Nobody to tell yet: the next subscriber triggers a new announcement.
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => false,
            Err(e) => {
                tracing::debug!(error = %e, "announcement not published");
                false
            }
        }
    }

    pub(super) fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let acceptance = self.accept(&message);
                if let Some(gossipsub) = self.swarm.behaviour_mut().gossipsub.as_mut() {
                    gossipsub.report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        acceptance,
                    );
                }
            }
            gossipsub::Event::Subscribed { peer_id, topic }
                if topic == self.gossip.topic.hash() =>
            {
                tracing::debug!(%peer_id, "peer subscribed to announcements");
                self.gossip.announce_pending = true;
                self.announce();
            }
            _ => {}
        }
    }

    /// Validates an announcement and applies it to the directory.
    fn accept(&mut self, message: &gossipsub::Message) -> MessageAcceptance {
        let now = now_ms();
        let announcement = match SignedAnnouncement::verify(&message.data, &self.gossip.mesh, now) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(source = ?message.source, error = %e, "announcement refused");
                return if e.is_misbehaviour() {
                    MessageAcceptance::Reject
                } else {
                    MessageAcceptance::Ignore
                };
            }
        };
        // Only the peer itself may publish its announcements.
        if message.source != Some(announcement.peer) {
            tracing::debug!(source = ?message.source, peer = %announcement.peer, "announcement relayed under another name");
            return MessageAcceptance::Reject;
        }
        if announcement.peer == self.gossip.identity.peer_id() {
            return MessageAcceptance::Ignore;
        }
        match self.learn(announcement, Source::Gossip, now) {
            Ok(_) => MessageAcceptance::Accept,
            // Valid, only not kept here: forwarded, since others may have room.
            Err(AnnouncementError::DirectoryFull) => MessageAcceptance::Accept,
            Err(e) if e.is_misbehaviour() => MessageAcceptance::Reject,
            Err(_) => MessageAcceptance::Ignore,
        }
    }

    /// Applies a verified announcement to the directory, remembers the
    /// peer's addresses and tells subscribers what changed.
    pub(super) fn learn(
        &mut self,
        announcement: Announcement,
        source: Source,
        now: u64,
    ) -> Result<Update, AnnouncementError> {
        let peer = announcement.peer;
        let addrs = announcement.addrs.clone();
        let known = self.gossip.directory.get(&peer).is_some();
        let update = match self.gossip.directory.apply(announcement, source, now) {
            Ok(update) => update,
            Err(e) => {
                // A known peer whose new announcement does not fit has lost
                // its out-of-date entry.
                if known && self.gossip.directory.get(&peer).is_none() {
                    tracing::debug!(%peer, "capabilities dropped: the directory is full");
                    let _ = self.events.send(Event::CapabilitiesExpired(peer));
                }
                return Err(e);
            }
        };
        for &evicted in self.gossip.directory.evicted() {
            tracing::debug!(peer = %evicted, "capabilities evicted to make room");
            let _ = self.events.send(Event::CapabilitiesExpired(evicted));
        }
        for addr in addrs {
            self.swarm.add_peer_address(peer, addr);
        }
        match update {
            Update::Added | Update::Changed => {
                tracing::debug!(%peer, ?update, ?source, "capabilities learned");
                let _ = self.events.send(Event::CapabilitiesLearned(peer));
            }
            Update::Withdrawn if known => {
                tracing::debug!(%peer, "capabilities withdrawn");
                let _ = self.events.send(Event::CapabilitiesExpired(peer));
            }
            Update::Withdrawn | Update::Refreshed => {}
        }
        Ok(update)
    }
}

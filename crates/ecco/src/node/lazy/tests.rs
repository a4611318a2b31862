//! When a [`Lazy`] behaviour and its handlers poll what they wrap.
//!
//! Probes count their polls and keep the last waker they were given, so each
//! test can fire it by hand: no network, no timers.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use libp2p::core::upgrade::DeniedUpgrade;
use libp2p::swarm::behaviour::ExternalAddrConfirmed;
use libp2p::swarm::dummy;

use super::*;

/// What a probe shares with its test.
#[derive(Default)]
struct Seen {
    polls: AtomicUsize,
    waker: Mutex<Option<Waker>>,
}

impl Seen {
    fn polls(&self) -> usize {
        self.polls.load(Ordering::SeqCst)
    }

    fn polled(&self, cx: &Context<'_>) {
        self.polls.fetch_add(1, Ordering::SeqCst);
        *self.waker.lock().expect("not poisoned") = Some(cx.waker().clone());
    }

    /// Wakes the probe the way a timer or a stream would.
    fn fire(&self) {
        let waker = self.waker.lock().expect("not poisoned").take();
        waker.expect("the probe was polled").wake();
    }
}

/// A handler with `ready` events to give, one per poll.
struct ProbeHandler {
    seen: Arc<Seen>,
    ready: VecDeque<()>,
    /// Wake itself during its next poll, as a stream that became ready
    /// between its check and its return would.
    wakes_itself: bool,
}

impl ConnectionHandler for ProbeHandler {
    type FromBehaviour = ();
    type ToBehaviour = ();
    type InboundProtocol = DeniedUpgrade;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<DeniedUpgrade, ()> {
        SubstreamProtocol::new(DeniedUpgrade, ())
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<DeniedUpgrade, (), ()>> {
        self.seen.polled(cx);
        if std::mem::take(&mut self.wakes_itself) {
            cx.waker().wake_by_ref();
        }
        match self.ready.pop_front() {
            Some(()) => Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(())),
            None => Poll::Pending,
        }
    }

    fn on_behaviour_event(&mut self, (): ()) {
        self.ready.push_back(());
    }

    fn on_connection_event(
        &mut self,
        _: ConnectionEvent<'_, DeniedUpgrade, DeniedUpgrade, (), ()>,
    ) {
    }
}

/// A behaviour with `ready` events to give, one per poll.
#[derive(Default)]
struct ProbeBehaviour {
    seen: Arc<Seen>,
    ready: VecDeque<()>,
}

impl NetworkBehaviour for ProbeBehaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = ();

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, _: FromSwarm<'_>) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<(), THandlerInEvent<Self>>> {
        self.seen.polled(cx);
        match self.ready.pop_front() {
            Some(()) => Poll::Ready(ToSwarm::GenerateEvent(())),
            None => Poll::Pending,
        }
    }
}

/// The task polling a wrapper: counts how often it is woken.
#[derive(Default)]
struct Task {
    wakes: AtomicUsize,
}

impl ArcWake for Task {
    fn wake_by_ref(task: &Arc<Self>) {
        task.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

impl Task {
    fn wakes(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }
}

fn handler(generation: &Arc<AtomicU64>) -> (Handler<ProbeHandler>, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let inner = ProbeHandler {
        seen: seen.clone(),
        ready: VecDeque::new(),
        wakes_itself: false,
    };
    (Handler::new(inner, generation.clone()), seen)
}

fn poll_handler(h: &mut Handler<ProbeHandler>, task: &Arc<Task>) -> bool {
    let waker = futures::task::waker(task.clone());
    h.poll(&mut Context::from_waker(&waker)).is_ready()
}

fn poll_behaviour(b: &mut Lazy<ProbeBehaviour>, task: &Arc<Task>) -> bool {
    let waker = futures::task::waker(task.clone());
    NetworkBehaviour::poll(b, &mut Context::from_waker(&waker)).is_ready()
}

#[test]
fn a_handler_is_polled_first_then_only_when_woken() {
    let task = Arc::new(Task::default());
    let (mut h, seen) = handler(&Arc::new(AtomicU64::new(0)));
    assert!(!poll_handler(&mut h, &task));
    assert_eq!(seen.polls(), 1);
    for _ in 0..5 {
        assert!(!poll_handler(&mut h, &task));
    }
    assert_eq!(seen.polls(), 1, "nothing woke it");

    seen.fire();
    assert_eq!(task.wakes(), 1, "its wake reaches the connection's task");
    assert!(!poll_handler(&mut h, &task));
    assert_eq!(seen.polls(), 2);
    assert!(!poll_handler(&mut h, &task));
    assert_eq!(seen.polls(), 2);
}

#[test]
fn a_handler_is_polled_after_an_event_and_until_it_has_none_left() {
    let task = Arc::new(Task::default());
    let (mut h, seen) = handler(&Arc::new(AtomicU64::new(0)));
    poll_handler(&mut h, &task);
    h.on_behaviour_event(());
    h.on_behaviour_event(());
    assert!(poll_handler(&mut h, &task));
    assert!(
        poll_handler(&mut h, &task),
        "it gave an event: it may have more"
    );
    assert!(!poll_handler(&mut h, &task));
    assert_eq!(seen.polls(), 4);
    assert!(!poll_handler(&mut h, &task));
    assert_eq!(seen.polls(), 4);
}

#[test]
fn a_handler_is_polled_after_a_connection_event() {
    let task = Arc::new(Task::default());
    let (mut h, seen) = handler(&Arc::new(AtomicU64::new(0)));
    poll_handler(&mut h, &task);
    let address: Multiaddr = "/memory/1".parse().expect("valid");
    h.on_connection_event(ConnectionEvent::AddressChange(
        libp2p::swarm::handler::AddressChange {
            new_address: &address,
        },
    ));
    poll_handler(&mut h, &task);
    assert_eq!(seen.polls(), 2);
}

#[test]
fn a_handler_is_polled_after_its_behaviour_did_anything() {
    let task = Arc::new(Task::default());
    let mut behaviour = Lazy::new(ProbeBehaviour::default());
    let (mut h, seen) = handler(&behaviour.generation);
    poll_handler(&mut h, &task);
    poll_handler(&mut h, &task);
    assert_eq!(seen.polls(), 1);

    // The behaviour ran (here: an event from the swarm); whatever it queued
    // for the handler must be looked at on the connection's next wake-up.
    let address: Multiaddr = "/memory/2".parse().expect("valid");
    behaviour.on_swarm_event(FromSwarm::ExternalAddrConfirmed(ExternalAddrConfirmed {
        addr: &address,
    }));
    poll_handler(&mut h, &task);
    assert_eq!(seen.polls(), 2);

    poll_behaviour(&mut behaviour, &task);
    poll_handler(&mut h, &task);
    assert_eq!(seen.polls(), 3, "a poll of the behaviour counts too");
    poll_handler(&mut h, &task);
    assert_eq!(seen.polls(), 3);
}

#[test]
fn a_behaviour_is_polled_first_then_only_when_woken_or_changed() {
    let task = Arc::new(Task::default());
    let mut b = Lazy::new(ProbeBehaviour::default());
    let seen = b.seen.clone();
    assert!(!poll_behaviour(&mut b, &task));
    assert!(!poll_behaviour(&mut b, &task));
    assert_eq!(seen.polls(), 1);

    seen.fire();
    assert_eq!(task.wakes(), 1, "its wake reaches the node's task");
    poll_behaviour(&mut b, &task);
    assert_eq!(seen.polls(), 2);

    // The event loop changes it through `DerefMut`.
    b.ready.push_back(());
    assert!(poll_behaviour(&mut b, &task));
    assert!(
        !poll_behaviour(&mut b, &task),
        "polled again after an event"
    );
    assert_eq!(seen.polls(), 4);
    assert!(!poll_behaviour(&mut b, &task));
    assert_eq!(seen.polls(), 4);

    // Reading it through `Deref` changes nothing.
    assert!(b.ready.is_empty());
    poll_behaviour(&mut b, &task);
    assert_eq!(seen.polls(), 4);
}

#[test]
fn a_wake_during_the_inner_poll_is_not_lost() {
    let task = Arc::new(Task::default());
    let (mut h, seen) = handler(&Arc::default());
    h.inner.wakes_itself = true;
    assert!(!poll_handler(&mut h, &task));
    assert_eq!(task.wakes(), 1);
    assert!(!poll_handler(&mut h, &task));
    assert_eq!(seen.polls(), 2);
    assert!(!poll_handler(&mut h, &task));
    assert_eq!(seen.polls(), 2);
}

#[test]
fn handlers_only_polls_the_behaviour_every_turn_and_its_handlers_after_events() {
    let task = Arc::new(Task::default());
    let mut b = Lazy::handlers_only(ProbeBehaviour::default());
    let seen = b.seen.clone();
    let (mut h, handler_seen) = handler(&b.generation);
    poll_behaviour(&mut b, &task);
    poll_handler(&mut h, &task);
    for _ in 0..3 {
        assert!(!poll_behaviour(&mut b, &task));
    }
    assert_eq!(seen.polls(), 4, "polled on every turn, woken or not");
    poll_handler(&mut h, &task);
    assert_eq!(
        handler_seen.polls(),
        1,
        "polls that returned nothing do not concern the handlers"
    );

    b.ready.push_back(());
    assert!(poll_behaviour(&mut b, &task));
    poll_handler(&mut h, &task);
    assert_eq!(handler_seen.polls(), 2, "an event may be for them");
}

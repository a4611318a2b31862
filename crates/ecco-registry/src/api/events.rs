//! Live events over server-sent events.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::auth;
use crate::error::ApiError;
use crate::state::App;
use crate::wire::ErrorBody;

/// Keeps the connected-clients gauge right however the stream ends.
struct Connected(App);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.metrics().event_clients.dec();
    }
}

/// Live events: registrations, heartbeats, missed heartbeats, health and
/// reputation changes, deregistrations. Each SSE message's `event` is the
/// kind and its `data` an `Event` in JSON. A client too slow to keep up gets
/// a `lagged` comment and continues with the newest events.
#[utoipa::path(get, path = "/v1/events", tag = "agents",
    responses((status = 200, description = "An SSE stream of Event", content_type = "text/event-stream", body = crate::wire::Event),
              (status = 401, body = ErrorBody)))]
pub(super) async fn stream(
    State(app): State<App>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    auth::reader(&app, &headers)?;
    let rx = app.shared().subscribe();
    app.metrics().event_clients.inc();
    let closing = app.closing();
    let guard = Connected(app);
    let events = futures::stream::unfold(
        (rx, closing, guard),
        |(mut rx, mut closing, guard)| async move {
            let received = tokio::select! {
                received = rx.recv() => received,
                _ = closing.wait_for(|closed| *closed) => return None,
            };
            let item = match received {
                Ok(event) => {
                    let name = serde_json::to_value(event.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    SseEvent::default()
                        .event(name)
                        .json_data(&event)
                        .unwrap_or_else(|_| SseEvent::default().comment("unencodable event"))
                }
                Err(RecvError::Lagged(n)) => SseEvent::default().comment(format!("lagged {n}")),
                Err(RecvError::Closed) => return None,
            };
            Some((Ok(item), (rx, closing, guard)))
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

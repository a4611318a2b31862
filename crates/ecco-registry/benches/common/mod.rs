//! What the registry's benches share.

use std::time::Duration;

/// Creates a database named `prefix` and this process's id on the server at
/// `url` (dropping one left by an earlier run of the same id); returns its
/// URL, a connection to the server for dropping it afterwards, and its name.
pub(crate) async fn fresh_postgres(
    url: &str,
    prefix: &str,
) -> Result<(String, sqlx::PgPool, String), sqlx::Error> {
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect(url)
        .await?;
    let name = format!("{prefix}_{}", std::process::id());
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&admin)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await?;
    let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
    Ok((format!("{base}/{name}"), admin, name))
}

//! The client against a registry behind TLS, with a private CA (the
//! air-gapped deployment's case).

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::registration;
use ecco_identity::Identity;
use ecco_registry::{Client, ClientError, Config};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A registry served over TLS on 127.0.0.1 with a certificate from a fresh
/// CA; its URL and the CA in PEM.
async fn tls_registry() -> (String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Ecco test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let server = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(server.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let router = ecco_registry::router(ecco_registry::open(Config::ephemeral()).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake.
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(router);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("https://127.0.0.1:{port}"), ca.pem())
}

#[tokio::test]
async fn the_client_speaks_https_to_a_registry_with_a_private_ca() {
    let (url, ca) = tls_registry().await;
    let agent = Identity::generate();
    let client = Client::new(&url, agent.clone())
        .unwrap()
        .with_root_certificates(ca.as_bytes())
        .unwrap();
    let detail = client
        .register(&registration("secure", &["llm/chat"]))
        .await
        .unwrap();
    assert_eq!(detail.peer_id, agent.peer_id().to_base58());
    client.heartbeat(None).await.unwrap();
    let hits = client.search("llm/chat", 1, 10).await.unwrap();
    assert_eq!(hits.total, 1);
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_with_a_clear_error() {
    let (url, _) = tls_registry().await;
    let client = Client::new(&url, Identity::generate()).unwrap();
    let refused = client.health().await.unwrap_err();
    match &refused {
        ClientError::Unreachable(why) => {
            assert!(why.to_lowercase().contains("certificate"), "{why}");
        }
        other => panic!("expected a certificate error, got {other:?}"),
    }
    assert!(refused.is_transient());
}

#[test]
fn bad_root_certificates_and_urls_are_refused() {
    let client = Client::new("https://127.0.0.1:1", Identity::generate()).unwrap();
    let none = client.clone().with_root_certificates(b"not a pem");
    assert!(
        matches!(&none, Err(ClientError::InvalidCertificate(why)) if why.contains("no PEM")),
        "{none:?}"
    );
    let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        client.with_root_certificates(garbage),
        Err(ClientError::InvalidCertificate(_))
    ));
    for bad in ["ftp://127.0.0.1:1", "https://", "https://host:1/path"] {
        assert!(
            matches!(
                Client::new(bad, Identity::generate()),
                Err(ClientError::InvalidUrl(_))
            ),
            "{bad}"
        );
    }
}

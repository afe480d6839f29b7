//! Mutual TLS between gateway and compute, with certificates made by the test (`rcgen`): a CA, compute's server
//! certificate for a service name, and the gateway's client certificate. The gateway with its certificate is
//! served; a gateway without one, a plaintext client, and a gateway expecting another name are refused.

use std::path::PathBuf;

use offload_proto::{
    service_names,
    v1::{ExecMode, FactorialRequest, compute_client::ComputeClient},
};
use offload_testkit::fault_proxy::FaultProxy;
use offload_tests::{compute, gateway_client, gateway_with_config, health, wait_until};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// The name in compute's certificate, as a Kubernetes Service name would be.
const SERVER_NAME: &str = "compute.offload.test";

struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// A CA, a server certificate for [`SERVER_NAME`] and a client certificate, as PEM files in a fresh folder.
    fn generate() -> Self {
        let dir = std::env::temp_dir().join(format!("offload-mtls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "offload test CA");
        let ca_cert = ca.self_signed(&ca_key).expect("CA");
        let issuer = Issuer::from_params(&ca, &ca_key);
        let write = |name: &str, pem: String| std::fs::write(dir.join(name), pem).expect("write pem");
        write("ca.pem", ca_cert.pem());
        for (who, names) in [("server", vec![SERVER_NAME.to_owned()]), ("client", vec!["offload-gateway".to_owned()])] {
            let key = KeyPair::generate().expect("key");
            let cert = CertificateParams::new(names).expect("params").signed_by(&key, &issuer).expect("sign");
            write(&format!("{who}.pem"), cert.pem());
            write(&format!("{who}.key"), key.serialize_pem());
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn gateway_config(compute_url: &str, extra: &[&str]) -> offload_gateway::Config {
    let mut argv = vec!["offload-gateway", "--compute", compute_url, "--default-timeout", "3s"];
    argv.extend_from_slice(extra);
    <offload_gateway::Config as clap::Parser>::parse_from(argv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_and_compute_speak_mutual_tls() {
    let pki = Pki::generate();
    let (ca, server_cert, server_key) = (pki.path("ca.pem"), pki.path("server.pem"), pki.path("server.key"));
    let (client_cert, client_key) = (pki.path("client.pem"), pki.path("client.key"));
    let compute_server = compute(&["--tls-cert", &server_cert, "--tls-key", &server_key, "--tls-client-ca", &ca]);

    // The gateway's TLS flags, to compute at `url`: trusting the CA, expecting `name`, presenting its certificate
    // or not.
    let tls = |url: &str, name: &str, with_certificate: bool| {
        let flags = ["--compute-tls-ca", &ca, "--compute-tls-server-name", name, "--health-retry", "100ms"];
        let mut config = gateway_config(url, &flags);
        if with_certificate {
            config.compute_tls_cert = Some(client_cert.clone().into());
            config.compute_tls_key = Some(client_key.clone().into());
        }
        config
    };

    // With its client certificate, the gateway is served. Its health streams hold their connections: through a
    // proxy counting them, two (one per gateway client), the contrast to the refusals below.
    let proxy = FaultProxy::start(compute_server.addr).await.expect("proxy");
    let trusted = gateway_with_config(tls(&format!("https://{}", proxy.addr()), SERVER_NAME, true));
    offload_tests::wait_serving(&trusted.url(), service_names::GATEWAY).await;
    assert_eq!(proxy.accepted(), 2, "the health streams of a gateway compute accepts hold their connections");
    let request = FactorialRequest { n: 20, mode: ExecMode::Rayon as i32, ..Default::default() };
    let reply = gateway_client(&trusted).await.factorial(request).await.expect("served over mTLS");
    assert_eq!(reply.into_inner().value, "2432902008176640000");

    // Without a client certificate, or expecting another name, the handshake fails: compute never looks
    // healthy, and calls are refused at once with UNAVAILABLE. Through a proxy that counts connections, to tell a
    // handshake refused from one not yet tried: the gateway opens one connection per health stream (its two
    // clients each watch compute), a stream that got through stays on it, and one refused is watched again on a
    // new connection every --health-retry. A third connection is a refusal, seen by the gateway.
    for (name, with_certificate) in [(SERVER_NAME, false), ("someone-else.offload.test", true)] {
        let proxy = FaultProxy::start(compute_server.addr).await.expect("proxy");
        let gateway = gateway_with_config(tls(&format!("https://{}", proxy.addr()), name, with_certificate));
        let retried = format!("{name}, certificate {with_certificate}: a health stream retried after its handshake");
        wait_until(&retried, std::time::Duration::from_secs(10), async || proxy.accepted() > 2).await;
        let status = gateway_client(&gateway).await.factorial(request).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert_eq!(
            health(&gateway.url(), service_names::GATEWAY).await.expect("health"),
            tonic_health::pb::health_check_response::ServingStatus::NotServing
        );
    }

    // A plaintext client cannot speak to the TLS port.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", compute_server.addr)).expect("url");
    if let Ok(channel) = plain.connect().await {
        let status = ComputeClient::new(channel).factorial(request).await.expect_err("plaintext refused");
        assert_ne!(status.code(), tonic::Code::Ok);
    }
}

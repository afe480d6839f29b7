//! Where a method's descriptors come from, as ghz and grpcurl take them: the server's reflection service (the
//! default), `.proto` files compiled in process by `protox` (no `protoc` needed), or a protoset (an encoded
//! `FileDescriptorSet`, as `protoc --descriptor_set_out --include_imports` writes). Then `--call` is looked up,
//! and a method that is not there is refused with the list of what is. From files every service defined is
//! offered; from reflection only those the server lists, since its files may define services it does not serve
//! (every call to one would be `UNIMPLEMENTED`).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use prost_reflect::{DescriptorPool, MethodDescriptor, ServiceDescriptor};
use tonic::transport::Channel;

/// The `--proto`, `-i/--import-paths` and `--protoset` flags, as ghz and grpcurl take them: declared once for every
/// command that finds a method's descriptors (`load`, `stall`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DescriptorArgs {
    /// `.proto` file(s) defining the service, compiled in process (no protoc). Default: ask the server's reflection.
    #[arg(long, conflicts_with = "protoset")]
    pub proto: Vec<PathBuf>,
    /// Folders searched for `--proto`'s imports (comma-separated); each file's own folder is searched last.
    #[arg(short = 'i', long = "import-paths", value_delimiter = ',')]
    pub import_paths: Vec<PathBuf>,
    /// Encoded FileDescriptorSet defining the service (`protoc --descriptor_set_out=F --include_imports`).
    #[arg(long)]
    pub protoset: Option<PathBuf>,
}

impl DescriptorArgs {
    /// The source these flags name: a protoset wins, then `.proto` files, else the server's reflection.
    pub fn source(&self) -> Source {
        match (&self.protoset, self.proto.is_empty()) {
            (Some(path), _) => Source::Protoset(path.clone()),
            (None, false) => Source::Protos { files: self.proto.clone(), imports: self.import_paths.clone() },
            (None, true) => Source::Reflection,
        }
    }
}

/// Where to read descriptors from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Ask the server (gRPC server reflection).
    Reflection,
    /// Compile these `.proto` files; imports are searched in `imports`, then in each file's own folder.
    Protos { files: Vec<PathBuf>, imports: Vec<PathBuf> },
    /// Read this encoded `FileDescriptorSet`.
    Protoset(PathBuf),
}

impl Source {
    /// Where this source is, for messages.
    fn describe(&self) -> String {
        match self {
            Self::Reflection => "the server's reflection service".to_owned(),
            Self::Protos { files, .. } => files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "),
            Self::Protoset(path) => path.display().to_string(),
        }
    }

    /// The method `--call` names, with everything its messages need; reflection (over `channel`) within
    /// `deadline`. From reflection, a service the server does not list is refused.
    pub async fn method(&self, channel: &Channel, call: &str, deadline: Duration) -> anyhow::Result<MethodDescriptor> {
        match self {
            Self::Reflection => {
                let reflected = crate::reflection::fetch(channel.clone(), deadline).await?;
                find_method(&reflected.pool, Some(&reflected.listed), call, &self.describe())
            }
            Self::Protos { .. } | Self::Protoset(_) => {
                self.method_from_files(call).context("descriptors from files")?
            }
        }
    }

    /// The method, from files only: `None` for reflection, which needs a connection.
    pub fn method_from_files(&self, call: &str) -> Option<anyhow::Result<MethodDescriptor>> {
        let pool = match self {
            Self::Reflection => return None,
            Self::Protos { files, imports } => compile(files, imports),
            Self::Protoset(path) => read_protoset(path),
        };
        Some(pool.and_then(|pool| find_method(&pool, None, call, &self.describe())))
    }
}

/// For a call that needs no descriptors (`load`'s typed path): refuses `call` when the server's reflection
/// answers within `deadline` and does not list its service, with the same message as [`Source::method`]. A
/// server whose reflection fails or is not there is not judged: the typed path never needed it.
pub async fn refuse_unlisted(channel: &Channel, call: &str, deadline: Duration) -> anyhow::Result<()> {
    let (service, _) = split_call(call)?;
    let Ok(reflected) = crate::reflection::fetch(channel.clone(), deadline).await else { return Ok(()) };
    if reflected.listed.iter().any(|listed| listed == service) {
        return Ok(());
    }
    find_method(&reflected.pool, Some(&reflected.listed), call, &Source::Reflection.describe()).map(drop)
}

/// Reads an encoded `FileDescriptorSet`.
fn read_protoset(path: &Path) -> anyhow::Result<DescriptorPool> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    DescriptorPool::decode(bytes.as_slice())
        .with_context(|| format!("{} is not an encoded FileDescriptorSet", path.display()))
}

/// Compiles `.proto` files in process (`protox`); each file's folder is searched after `imports`, as in ghz.
fn compile(files: &[PathBuf], imports: &[PathBuf]) -> anyhow::Result<DescriptorPool> {
    let mut includes = imports.to_vec();
    for file in files {
        let folder = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !includes.iter().any(|i| file.starts_with(i)) {
            includes.push(folder.to_owned());
        }
    }
    let mut compiler = protox::Compiler::new(&includes).context("--import-paths")?;
    compiler.include_imports(true);
    compiler.open_files(files).map_err(|e| anyhow::anyhow!("cannot compile --proto: {e}"))?;
    Ok(compiler.descriptor_pool())
}

/// `package.Service/Method` or `package.Service.Method` (ghz and grpcurl take both), split.
pub fn split_call(call: &str) -> anyhow::Result<(&str, &str)> {
    let call = call.trim_start_matches('/');
    call.rsplit_once('/')
        .or_else(|| call.rsplit_once('.'))
        .filter(|(service, method)| !service.is_empty() && !method.is_empty())
        .with_context(|| format!("--call {call:?}: expected package.Service/Method"))
}

/// The method `call` names in `pool`, among the services `listed` (every service in `pool` if `None`), or an error
/// listing every service and method offered (as grpcurl does).
pub fn find_method(
    pool: &DescriptorPool,
    listed: Option<&[String]>,
    call: &str,
    source: &str,
) -> anyhow::Result<MethodDescriptor> {
    let (service, method) = split_call(call)?;
    let offered = |s: &ServiceDescriptor| listed.is_none_or(|names| names.iter().any(|n| n == s.full_name()));
    let found = pool.get_service_by_name(service).filter(offered);
    if let Some(found) = found.as_ref().and_then(|s| s.methods().find(|m| m.name() == method)) {
        return Ok(found);
    }
    let mut services: Vec<_> = pool.services().filter(offered).collect();
    services.sort_by(|a, b| a.full_name().cmp(b.full_name()));
    let mut listing = String::new();
    for service in services {
        listing.push_str(&format!("\n  {}", service.full_name()));
        for method in service.methods() {
            listing.push_str(&format!("\n    {}", method.full_name()));
        }
    }
    if listing.is_empty() {
        bail!("--call {call}: no such method: {source} defines no services");
    }
    let what = match (&found, pool.get_service_by_name(service)) {
        (Some(_), _) => "no such method".to_owned(),
        // Defined in the files the server sent (beside a service it serves) but not listed: not served.
        (None, Some(_)) => {
            format!("the server does not serve {service} (its files define it, its reflection does not list it)")
        }
        (None, None) => "no such service".to_owned(),
    };
    bail!("--call {call}: {what}. Services and methods in {source}:{listing}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_are_refused_with_the_list() {
        let pool = DescriptorPool::decode(offload_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
        let found = find_method(&pool, None, "offload.v1.Gateway/Factorial", "here").expect("exists");
        assert_eq!(found.full_name(), "offload.v1.Gateway.Factorial");
        assert_eq!(
            find_method(&pool, None, "/offload.v1.Compute.SumOfSquares", "here").expect("exists").name(),
            "SumOfSquares"
        );
        let error = find_method(&pool, None, "offload.v1.Gateway/Nope", "here").expect_err("unknown").to_string();
        assert!(error.starts_with("--call offload.v1.Gateway/Nope: no such method. Services and methods in here:"));
        assert!(error.contains("\n  offload.v1.Compute\n    offload.v1.Compute.Factorial"), "{error}");
        let error = find_method(&pool, None, "nope.Svc/M", "here").expect_err("unknown").to_string();
        assert!(error.contains("no such service"), "{error}");
        assert!(split_call("Factorial").is_err());
    }

    #[test]
    fn services_defined_but_not_listed_are_refused_and_not_offered() {
        // As the gateway's reflection: offload.proto defines both services, the gateway lists its own.
        let pool = DescriptorPool::decode(offload_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
        let listed = ["offload.v1.Gateway".to_owned()];
        let found = find_method(&pool, Some(&listed), "offload.v1.Gateway/Factorial", "gw").expect("listed");
        assert_eq!(found.full_name(), "offload.v1.Gateway.Factorial");
        let error = find_method(&pool, Some(&listed), "offload.v1.Compute/Factorial", "gw").expect_err("not listed");
        let error = error.to_string();
        assert!(error.starts_with("--call offload.v1.Compute/Factorial: the server does not serve offload.v1.Compute"));
        assert!(error.contains("Services and methods in gw:\n  offload.v1.Gateway\n"), "{error}");
        assert!(!error.contains("\n  offload.v1.Compute"), "only what is listed is offered: {error}");
    }

    #[test]
    fn protos_compile_in_process_with_their_imports() {
        let dir = std::env::temp_dir().join(format!("loadgen-protos-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a")).expect("dir");
        std::fs::write(dir.join("a/m.proto"), "syntax = \"proto3\"; package a; message M { int64 id = 1; }")
            .expect("write");
        std::fs::write(
            dir.join("s.proto"),
            "syntax = \"proto3\"; package s; import \"a/m.proto\"; import \"google/protobuf/empty.proto\";\n\
             service S { rpc Get(a.M) returns (google.protobuf.Empty); }",
        )
        .expect("write");
        let pool = compile(&[dir.join("s.proto")], &[]).expect("compiles");
        let method = find_method(&pool, None, "s.S/Get", "s.proto").expect("found");
        assert_eq!(method.input().full_name(), "a.M");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Hot-path costs of the scope registry, each beside a baseline from the same run:
//! `MethodSet::contains` vs `HashSet<u32>::contains` and a single `u64` AND,
//! `Snapshot::route` on a parameterised path vs a `HashMap<String, u32>` exact-path get,
//! `Snapshot::lookup` vs a `HashMap<String, u32>` get of the same id.

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use sigil_scope_registry::{
    Access, HttpRoute, ManifestMethod, ManifestScopeSet, MethodIdx, PluginManifest,
    RegisteredPlugin, Snapshot,
};
use uuid::Uuid;

const PLUGINS: [&str; 5] = ["compute", "storage", "network", "billing", "identity"];
const RESOURCES: usize = 20;
const ACTIONS: [(&str, &str, bool, Access); 5] = [
    ("list", "GET", false, Access::Read),
    ("create", "POST", false, Access::Change),
    ("get", "GET", true, Access::Read),
    ("update", "PUT", true, Access::Change),
    ("delete", "DELETE", true, Access::Change),
];

/// 5 plugins x 20 resources x 5 actions = 500 methods.
fn manifest(plugin: &str) -> PluginManifest {
    let mut methods = Vec::new();
    for r in 0..RESOURCES {
        for (action, verb, with_id, access) in ACTIONS {
            let path = if with_id {
                format!("/api/{plugin}/v1/res{r}/{{id}}")
            } else {
                format!("/api/{plugin}/v1/res{r}")
            };
            methods.push(ManifestMethod {
                id: format!("{plugin}.res{r}.{action}"),
                http: HttpRoute::new(verb, &path),
                access,
                description: String::new(),
                docs_url: None,
                cost: 1,
            });
        }
    }
    PluginManifest {
        id: plugin.to_string(),
        name: plugin.to_string(),
        version: "1".to_string(),
        description: None,
        docs_url: None,
        methods,
        scope_sets: vec![ManifestScopeSet {
            id: "readers".to_string(),
            name: "Readers".to_string(),
            description: String::new(),
            methods: vec!["*".to_string()],
            access: Some(Access::Read),
        }],
    }
}

fn snapshot() -> Snapshot {
    let plugins = PLUGINS
        .iter()
        .map(|p| RegisteredPlugin::global(manifest(p)))
        .collect();
    match Snapshot::build_with_version(plugins, 1) {
        Ok(s) => s,
        Err(errors) => {
            eprintln!("benchmark snapshot does not build: {errors:?}");
            std::process::exit(1);
        }
    }
}

fn idx_of(s: &Snapshot, id: &str) -> MethodIdx {
    match s.lookup(None, id) {
        Some(idx) => idx,
        None => {
            eprintln!("unknown benchmark method {id}");
            std::process::exit(1);
        }
    }
}

fn bench_contains(c: &mut Criterion) {
    let s = snapshot();
    let entries = vec!["storage.*".to_string(), "billing.*".to_string()];
    let set = s.resolve_lenient(None, &entries, Some(Access::Read));
    let hashed: HashSet<u32> = set.iter().map(|i| i.0).collect();
    let member = idx_of(&s, "billing.res7.get");
    let outsider = idx_of(&s, "compute.res7.get");
    let word: u64 = set.as_words().first().copied().unwrap_or(0);

    let mut g = c.benchmark_group("contains");
    g.bench_function("method_set", |b| {
        b.iter(|| {
            black_box(&set).contains(black_box(member))
                | black_box(&set).contains(black_box(outsider))
        })
    });
    g.bench_function("baseline_hashset_u32", |b| {
        b.iter(|| {
            black_box(&hashed).contains(&black_box(member).0)
                | black_box(&hashed).contains(&black_box(outsider).0)
        })
    });
    g.bench_function("baseline_u64_and", |b| {
        b.iter(|| {
            (black_box(word) & black_box(1u64 << 7) != 0)
                | (black_box(word) & black_box(1u64 << 9) != 0)
        })
    });
    g.finish();
}

fn bench_route(c: &mut Criterion) {
    let s = snapshot();
    let path = "/api/storage/v1/res13/0b7f5d2e-3c41-4a8e-9d1f-6a2b8c9e0f11?verbose=true";
    let exact: HashMap<String, u32> = s
        .methods_visible(None)
        .map(|(i, m)| (format!("{} {}", m.http_method, m.path), i.0))
        .collect();
    let exact_key = "GET /api/storage/v1/res13/{id}";
    let tenant = Some(Uuid::from_u128(42));

    let mut g = c.benchmark_group("route");
    g.bench_function("route_param_path", |b| {
        b.iter(|| black_box(&s).route(black_box(tenant), black_box("GET"), black_box(path)))
    });
    g.bench_function("route_static_path", |b| {
        b.iter(|| {
            black_box(&s).route(
                black_box(None),
                black_box("POST"),
                black_box("/api/identity/v1/res19"),
            )
        })
    });
    g.bench_function("baseline_hashmap_exact_path", |b| {
        b.iter(|| black_box(&exact).get(black_box(exact_key)).copied())
    });
    g.finish();
}

fn bench_lookup(c: &mut Criterion) {
    let s = snapshot();
    let by_id: HashMap<String, u32> = s
        .methods_visible(None)
        .map(|(i, m)| (m.id.clone(), i.0))
        .collect();
    let id = "network.res11.update";
    let tenant = Some(Uuid::from_u128(42));

    let mut g = c.benchmark_group("lookup");
    g.bench_function("lookup_by_id", |b| {
        b.iter(|| black_box(&s).lookup(black_box(tenant), black_box(id)))
    });
    g.bench_function("baseline_hashmap_string_get", |b| {
        b.iter(|| black_box(&by_id).get(black_box(id)).copied())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_contains, bench_route, bench_lookup
}
criterion_main!(benches);

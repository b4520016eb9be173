//! Least privilege, checked: what each function's code calls in AWS, what it declares, and
//! what `template.yaml` grants it must agree exactly.
//!
//! 1. **The code.** Each function crate declares the AWS calls it makes in `AWS_CALLS`
//!    (`presence::permissions::Call`). [`code`] reads the Rust source of the function and of
//!    the `presence` library (the `mod` tree from `lib.rs`, as written, without the tests),
//!    builds the call graph from the function's `main` (methods resolved through field,
//!    parameter and `let` types, trait calls through the implementations the function
//!    constructs), and collects every AWS SDK operation reachable from it: a method called on
//!    an `aws_sdk_*::Client`, with the index an `.index_name(..)` / `.set_index_name(..)` on
//!    its builder names (followed through helper parameters to the literal). The declared
//!    list must be exactly that set: an SDK call added without declaring it fails, and so
//!    does a declared call the code no longer makes.
//! 2. **The template.** [`cfn`] reads `template.yaml` with CloudFormation's tags kept and
//!    evaluates it for every combination of the parameters its conditions and rules depend
//!    on (so both sides of every `!If`). For each function it derives what the declared calls
//!    need (IAM action per operation, on the queue, table, index, secret, KMS key or
//!    `@connections` ARN its environment names) plus what its event source mappings need, and
//!    compares that with the statements of its `Policies`: nothing missing, nothing stray.
//!
//! docs/deploy.md, "Permissions", says how to change a function's permissions.

use presence::permissions::{Call, On, Service};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every function crate: its name (the template's `BuildProperties.Binary`, the folder under
/// `functions/`) and its declaration.
const FUNCTIONS: &[(&str, &[Call])] = &[
    ("heartbeat-ingest", heartbeat_ingest::AWS_CALLS),
    ("heartbeat-consumer", heartbeat_consumer::AWS_CALLS),
    ("session-expiry", session_expiry::AWS_CALLS),
    ("facility-rollup", facility_rollup::AWS_CALLS),
    ("ws-connect", ws_connect::AWS_CALLS),
    ("ws-disconnect", ws_disconnect::AWS_CALLS),
    ("ws-message", ws_message::AWS_CALLS),
    ("ws-push", ws_push::AWS_CALLS),
    ("history-read", history_read::AWS_CALLS),
    ("admin-api", admin_api::AWS_CALLS),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_path_buf()
}

/// `template.yaml`, or the template `PERMISSIONS_TEMPLATE` names (to check a candidate).
fn template_path() -> PathBuf {
    match std::env::var_os("PERMISSIONS_TEMPLATE") {
        Some(p) => PathBuf::from(p),
        None => repo().join("template.yaml"),
    }
}

fn function_dirs() -> BTreeSet<String> {
    std::fs::read_dir(repo().join("functions"))
        .expect("functions/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// What the code of `function` calls, as the declaration states it: (service, operation,
/// index or none).
type OpKey = (Service, String, Option<String>);

fn declared_key(c: &Call) -> OpKey {
    let index = match c.on {
        On::Index(_, name) => Some(name.to_owned()),
        _ => None,
    };
    (c.service, c.operation.to_owned(), index)
}

fn show_key((service, op, index): &OpKey) -> String {
    match index {
        Some(i) => format!("{service:?} {op} on index {i:?}"),
        None => format!("{service:?} {op}"),
    }
}

#[test]
fn every_function_crate_declares_its_calls() {
    let listed: BTreeSet<String> = FUNCTIONS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        listed,
        function_dirs(),
        "FUNCTIONS in tests/permissions.rs must list every crate under functions/"
    );
}

#[test]
fn declared_calls_are_exactly_the_sdk_calls_the_code_can_make() {
    let mut problems = Vec::new();
    for (name, declared) in FUNCTIONS {
        let found = code::sdk_calls(&repo(), name);
        if std::env::var_os("PERMISSIONS_DEBUG").is_some() {
            for f in &found.calls {
                eprintln!(
                    "{name}: {} {} {:?} at {} via {}",
                    f.sdk, f.operation, f.index, f.at, f.path
                );
            }
        }
        for w in &found.problems {
            problems.push(format!("{name}: {w}"));
        }
        let mut declared_keys: BTreeMap<OpKey, &Call> = BTreeMap::new();
        for c in *declared {
            declared_keys.insert(declared_key(c), c);
        }
        let mut code_keys: BTreeMap<OpKey, &code::Found> = BTreeMap::new();
        for f in &found.calls {
            let Some(service) = Service::from_sdk_crate(&f.sdk) else {
                problems.push(format!(
                    "{name}: calls {} {} ({}), a service presence::permissions does not know yet: \
                     add it there (and its IAM actions)",
                    f.sdk, f.operation, f.at
                ));
                continue;
            };
            code_keys.insert((service, f.operation.clone(), f.index.clone()), f);
        }
        for (k, f) in &code_keys {
            if !declared_keys.contains_key(k) {
                problems.push(format!(
                    "{name}: the code calls {} ({}, reached {}), which functions/{name}/src/lib.rs \
                     AWS_CALLS does not declare",
                    show_key(k),
                    f.at,
                    f.path
                ));
            }
        }
        for k in declared_keys.keys() {
            if !code_keys.contains_key(k) {
                problems.push(format!(
                    "{name}: AWS_CALLS declares {}, which no code reachable from its main calls",
                    show_key(k)
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "declared AWS calls differ from the code:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn each_function_policy_grants_exactly_what_its_calls_need() {
    let template = cfn::Template::load(&template_path());
    let problems = template.check_policies(FUNCTIONS);
    assert!(
        problems.is_empty(),
        "template.yaml policies differ from what the functions need:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn scheduled_functions_are_not_retried_by_lambda() {
    let template = cfn::Template::load(&template_path());
    let problems = template.check_scheduled_retries();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The checker must catch the bug it was written for: a policy without an operation the code
/// calls, and a grant nothing needs. (Runs on the real template with one statement edited.)
#[test]
fn the_template_check_fails_on_a_missing_and_a_stray_grant() {
    let path = repo().join("template.yaml");
    let text = std::fs::read_to_string(&path).expect("template.yaml");
    let mut template = cfn::Template::parse(&text);
    template.edit_dynamodb_actions("FacilityRollupFunction", |actions| {
        actions.retain(|a| a != "dynamodb:GetItem");
        actions.push("dynamodb:DeleteItem".into());
    });
    let problems = template.check_policies(FUNCTIONS).join("\n");
    assert!(
        problems.contains("facility-rollup") && problems.contains("missing dynamodb:GetItem"),
        "{problems}"
    );
    assert!(problems.contains("stray dynamodb:DeleteItem"), "{problems}");
}

/// The code check must see a call added in a shape it has not met before, and refuse what it
/// cannot read.
#[test]
fn the_code_scan_sees_calls_through_helpers_traits_and_index_parameters() {
    let src = r#"
        pub trait Store: Send + Sync { fn get(&self, id: &str); fn all(&self); }
        pub struct Dynamo { client: aws_sdk_dynamodb::Client }
        impl Dynamo {
            fn query(&self, index: Option<&str>) {
                let q = self.client.query().set_index_name(index.map(str::to_owned));
                let _ = q.send();
            }
            fn by(&self, index: &str) { self.query(Some(index)) }
        }
        impl Store for Dynamo {
            fn get(&self, id: &str) { let _ = self.client.get_item().send(); self.by("by-x"); }
            fn all(&self) { self.query(None); let _ = self.client.scan().send(); }
        }
        pub struct Service { store: std::sync::Arc<dyn Store> }
        impl Service { pub fn run(&self) { self.store.get("a") } }
        fn main() {
            let client = aws_sdk_dynamodb::Client::new(&sdk);
            let s = Service { store: std::sync::Arc::new(Dynamo { client }) };
            s.run();
        }
    "#;
    let found = code::sdk_calls_in_source(src);
    let mut got: Vec<String> = found
        .calls
        .iter()
        .map(|c| format!("{} {} {:?}", c.sdk, c.operation, c.index))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "aws_sdk_dynamodb GetItem None",
            "aws_sdk_dynamodb Query Some(\"by-x\")"
        ],
        "{:?}",
        found.problems
    );
    // A client the scanner cannot type is a failure, not a silent miss.
    let opaque = r#"
        fn make() -> impl Sized { todo() }
        fn main() { let c = make(); let _ = c.put_item().send(); }
    "#;
    let found = code::sdk_calls_in_source(opaque);
    assert!(
        found.problems.iter().any(|p| p.contains("cannot tell")),
        "{:?}",
        found.problems
    );
}

// ---------------------------------------------------------------------------------------------

/// The call graph of a function and the AWS SDK calls reachable in it.
mod code {
    use quote::ToTokens;
    use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
    use std::path::Path;
    use syn::punctuated::Punctuated;
    use syn::spanned::Spanned;
    use syn::visit::Visit;

    /// One SDK operation the function can call.
    #[derive(Debug, Clone)]
    pub struct Found {
        /// The SDK crate, `aws_sdk_dynamodb`.
        pub sdk: String,
        /// `PutItem`.
        pub operation: String,
        /// The secondary index it reads, if any.
        pub index: Option<String>,
        /// Where the call is (`file:line`).
        pub at: String,
        /// A chain of calls from `main` to it.
        pub path: String,
    }

    #[derive(Debug, Default)]
    pub struct Report {
        pub calls: Vec<Found>,
        /// What the scan could not follow (each is a test failure).
        pub problems: Vec<String>,
    }

    /// The SDK calls reachable from `functions/<function>/src/main.rs`.
    pub fn sdk_calls(repo: &Path, function: &str) -> Report {
        let crate_name = function.replace('-', "_");
        let mut u = Universe {
            repo: repo.to_path_buf(),
            ..Universe::default()
        };
        u.load_crate(
            &crate_name,
            &repo.join("functions").join(function).join("src"),
            true,
        );
        u.load_crate("presence", &repo.join("shared").join("src"), false);
        u.index();
        let entries: Vec<usize> = (0..u.fns.len())
            .filter(|&i| u.fns[i].module.first() == Some(&format!("{crate_name}_main")))
            .collect();
        assert!(
            !entries.is_empty(),
            "no fn main in functions/{function}/src/main.rs"
        );
        u.analyze(&entries)
    }

    /// The SDK calls reachable from `main` in one source text (the checker's own tests).
    pub fn sdk_calls_in_source(src: &str) -> Report {
        let mut u = Universe::default();
        let file = syn::parse_file(src).expect("test source parses");
        u.add_items(
            &file.items,
            &["t_main".to_owned()],
            "src.rs",
            &mut Vec::new(),
        );
        u.index();
        let entries: Vec<usize> = (0..u.fns.len())
            .filter(|&i| u.fns[i].name == "main")
            .collect();
        u.analyze(&entries)
    }

    /// What a value is, as far as the scan can tell.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ty {
        /// A struct, enum or trait of the scanned crates.
        Ours(String),
        /// An `aws_sdk_<service>::Client` (the crate name).
        Sdk(String),
        /// The request builder of an SDK call (its id).
        Builder(Loc),
        /// A std container or wrapper (`Vec`, `HashMap`, `Mutex`, ...) of values of this type,
        /// or something taken out of one: its methods are std's or the element's.
        Std(Box<Ty>),
        /// A type of another crate (std, tokio, ...): its methods call no SDK.
        Foreign,
        Unknown,
    }

    type Loc = (String, usize, usize);

    impl Ty {
        /// A container of `elem`.
        fn container(elem: Ty) -> Ty {
            match elem {
                Ty::Foreign => Ty::Foreign,
                Ty::Unknown => Ty::Unknown,
                Ty::Std(t) => Ty::Std(t),
                t => Ty::Std(Box::new(t)),
            }
        }
    }

    struct FnDef {
        name: String,
        /// `["presence", "hub", "setup"]`; a binary's `main.rs` is `["<crate>_main"]`.
        module: Vec<String>,
        /// The type of `Self`: the impl's type, or the trait of a default method.
        self_ty: Option<String>,
        /// The trait an impl method implements (or a default method belongs to).
        trait_: Option<String>,
        has_self: bool,
        params: Vec<(String, syn::Type)>,
        ret: Option<syn::Type>,
        bounds: HashMap<String, Vec<String>>,
        block: syn::Block,
        file: String,
        imports: usize,
    }

    #[derive(Default)]
    struct Universe {
        /// Source paths are shown relative to it.
        repo: std::path::PathBuf,
        fns: Vec<FnDef>,
        structs: HashMap<String, HashMap<String, syn::Type>>,
        enums: HashSet<String>,
        /// `type A = B;`
        aliases: HashMap<String, syn::Type>,
        /// `const` and `static` items and their types.
        consts: HashMap<String, syn::Type>,
        traits: HashSet<String>,
        trait_sigs: HashMap<(String, String), Option<syn::Type>>,
        /// Per file: imported paths (`["presence", "hub", "setup", "build"]`, or ending in `*`).
        imports: Vec<Vec<Vec<String>>>,
        by_name: HashMap<String, Vec<usize>>,
        /// (type, trait) impls.
        impls: HashSet<(String, String)>,
        problems: Vec<String>,
    }

    fn is_test_only(attrs: &[syn::Attribute]) -> bool {
        attrs.iter().any(|a| {
            let text = a.meta.to_token_stream().to_string().replace(' ', "");
            a.path().is_ident("test") || text == "cfg(test)" || text.starts_with("tokio::test")
        })
    }

    fn type_last_name(t: &syn::Type) -> Option<String> {
        match t {
            syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
            syn::Type::Reference(r) => type_last_name(&r.elem),
            syn::Type::Paren(p) => type_last_name(&p.elem),
            syn::Type::Group(g) => type_last_name(&g.elem),
            _ => None,
        }
    }

    fn flatten_use(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                flatten_use(&p.tree, prefix, out);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut v = prefix.clone();
                v.push(n.ident.to_string());
                out.push(v);
            }
            syn::UseTree::Rename(r) => {
                let mut v = prefix.clone();
                v.push(r.ident.to_string());
                out.push(v);
            }
            syn::UseTree::Glob(_) => {
                let mut v = prefix.clone();
                v.push("*".into());
                out.push(v);
            }
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    flatten_use(t, prefix, out);
                }
            }
        }
    }

    /// Every type parameter with the traits that bound it (in `<..>` and `where`).
    fn generic_bounds(g: &syn::Generics, into: &mut HashMap<String, Vec<String>>) {
        let names = |bounds: &Punctuated<syn::TypeParamBound, syn::Token![+]>| -> Vec<String> {
            bounds
                .iter()
                .filter_map(|b| match b {
                    syn::TypeParamBound::Trait(t) => {
                        t.path.segments.last().map(|s| s.ident.to_string())
                    }
                    _ => None,
                })
                .collect()
        };
        for p in g.type_params() {
            into.entry(p.ident.to_string())
                .or_default()
                .extend(names(&p.bounds));
        }
        if let Some(w) = &g.where_clause {
            for pred in &w.predicates {
                if let syn::WherePredicate::Type(t) = pred {
                    if let Some(name) = type_last_name(&t.bounded_ty) {
                        if let Some(list) = into.get_mut(&name) {
                            list.extend(names(&t.bounds));
                        }
                    }
                }
            }
        }
    }

    impl Universe {
        /// Loads a crate from its root (`lib.rs`, and `main.rs` for a function crate),
        /// following `mod` declarations.
        fn load_crate(&mut self, name: &str, src: &Path, binary: bool) {
            self.load_file(&src.join("lib.rs"), &[name.to_owned()]);
            if binary {
                self.load_file(&src.join("main.rs"), &[format!("{name}_main")]);
            }
        }

        fn load_file(&mut self, file: &Path, module: &[String]) {
            let text =
                std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let parsed = syn::parse_file(&text)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", file.display()));
            let shown = file
                .strip_prefix(&self.repo)
                .unwrap_or(file)
                .display()
                .to_string();
            let mut submodules = Vec::new();
            self.add_items(&parsed.items, module, &shown, &mut submodules);
            // `mod x;` in lib.rs/main.rs/mod.rs is dir/x.rs or dir/x/mod.rs; in a.rs it is dir/a/x.rs.
            let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let here = if matches!(stem, "lib" | "main" | "mod") {
                file.parent().expect("file has a folder").to_path_buf()
            } else {
                file.with_extension("")
            };
            for (sub_module, name, explicit) in submodules {
                // `#[path = "x.rs"] mod m;` is relative to the declaring file's folder.
                if let Some(explicit) = explicit {
                    let folder = file.parent().expect("file has a folder");
                    self.load_file(&folder.join(explicit), &sub_module);
                    continue;
                }
                let flat = here.join(format!("{name}.rs"));
                let nested = here.join(&name).join("mod.rs");
                let path = if flat.is_file() { flat } else { nested };
                self.load_file(&path, &sub_module);
            }
        }

        fn add_items(
            &mut self,
            items: &[syn::Item],
            module: &[String],
            file: &str,
            submodules: &mut Vec<(Vec<String>, String, Option<String>)>,
        ) {
            let imports_id = self.imports.len();
            let mut imports = Vec::new();
            for item in items {
                if let syn::Item::Use(u) = item {
                    flatten_use(&u.tree, &mut Vec::new(), &mut imports);
                }
            }
            self.imports.push(imports);
            for item in items {
                match item {
                    syn::Item::Fn(f) if !is_test_only(&f.attrs) => {
                        let mut bounds = HashMap::new();
                        generic_bounds(&f.sig.generics, &mut bounds);
                        self.add_fn(
                            &f.sig, &f.block, module, None, None, bounds, file, imports_id,
                        );
                    }
                    syn::Item::Impl(i) if !is_test_only(&i.attrs) => {
                        let Some(self_ty) = type_last_name(&i.self_ty) else {
                            continue;
                        };
                        let trait_ = i
                            .trait_
                            .as_ref()
                            .and_then(|(_, p, _)| p.segments.last())
                            .map(|s| s.ident.to_string());
                        if let Some(t) = &trait_ {
                            self.impls.insert((self_ty.clone(), t.clone()));
                        }
                        for ii in &i.items {
                            if let syn::ImplItem::Fn(f) = ii {
                                if is_test_only(&f.attrs) {
                                    continue;
                                }
                                let mut bounds = HashMap::new();
                                generic_bounds(&i.generics, &mut bounds);
                                generic_bounds(&f.sig.generics, &mut bounds);
                                self.add_fn(
                                    &f.sig,
                                    &f.block,
                                    module,
                                    Some(self_ty.clone()),
                                    trait_.clone(),
                                    bounds,
                                    file,
                                    imports_id,
                                );
                            }
                        }
                    }
                    syn::Item::Trait(t) if !is_test_only(&t.attrs) => {
                        let name = t.ident.to_string();
                        self.traits.insert(name.clone());
                        for ti in &t.items {
                            if let syn::TraitItem::Fn(f) = ti {
                                let ret = match &f.sig.output {
                                    syn::ReturnType::Type(_, t) => Some((**t).clone()),
                                    syn::ReturnType::Default => None,
                                };
                                self.trait_sigs
                                    .insert((name.clone(), f.sig.ident.to_string()), ret);
                                if let Some(block) = &f.default {
                                    let mut bounds = HashMap::new();
                                    generic_bounds(&f.sig.generics, &mut bounds);
                                    self.add_fn(
                                        &f.sig,
                                        block,
                                        module,
                                        Some(name.clone()),
                                        Some(name.clone()),
                                        bounds,
                                        file,
                                        imports_id,
                                    );
                                }
                            }
                        }
                    }
                    syn::Item::Struct(s) => {
                        let fields = s
                            .fields
                            .iter()
                            .enumerate()
                            .map(|(i, f)| {
                                let name = f
                                    .ident
                                    .as_ref()
                                    .map(|i| i.to_string())
                                    .unwrap_or_else(|| i.to_string());
                                (name, f.ty.clone())
                            })
                            .collect();
                        self.structs.insert(s.ident.to_string(), fields);
                    }
                    syn::Item::Enum(e) => {
                        self.enums.insert(e.ident.to_string());
                    }
                    syn::Item::Type(t) => {
                        self.aliases.insert(t.ident.to_string(), (*t.ty).clone());
                    }
                    syn::Item::Const(c) => {
                        self.consts.insert(c.ident.to_string(), (*c.ty).clone());
                    }
                    syn::Item::Static(c) => {
                        self.consts.insert(c.ident.to_string(), (*c.ty).clone());
                    }
                    syn::Item::Mod(m) if !is_test_only(&m.attrs) => {
                        let mut sub = module.to_vec();
                        sub.push(m.ident.to_string());
                        match &m.content {
                            Some((_, items)) => self.add_items(items, &sub, file, submodules),
                            None => {
                                let explicit = m.attrs.iter().find_map(|a| match &a.meta {
                                    syn::Meta::NameValue(nv) if nv.path.is_ident("path") => {
                                        match &nv.value {
                                            syn::Expr::Lit(syn::ExprLit {
                                                lit: syn::Lit::Str(s),
                                                ..
                                            }) => Some(s.value()),
                                            _ => None,
                                        }
                                    }
                                    _ => None,
                                });
                                submodules.push((sub, m.ident.to_string(), explicit))
                            }
                        }
                    }
                    // Items a macro_rules! generates are not seen: it must not call AWS.
                    syn::Item::Macro(m)
                        if m.mac.path.is_ident("macro_rules")
                            && m.mac.tokens.to_string().contains("aws_sdk_") =>
                    {
                        self.problems.push(format!(
                            "{file}: macro_rules! {} uses the AWS SDK, which the scan cannot follow",
                            m.ident.as_ref().map(|i| i.to_string()).unwrap_or_default()
                        ));
                    }
                    _ => {}
                }
            }
        }

        #[allow(clippy::too_many_arguments)]
        fn add_fn(
            &mut self,
            sig: &syn::Signature,
            block: &syn::Block,
            module: &[String],
            self_ty: Option<String>,
            trait_: Option<String>,
            bounds: HashMap<String, Vec<String>>,
            file: &str,
            imports: usize,
        ) {
            let mut has_self = false;
            let mut params = Vec::new();
            for input in &sig.inputs {
                match input {
                    syn::FnArg::Receiver(_) => has_self = true,
                    syn::FnArg::Typed(pt) => {
                        let name = match &*pt.pat {
                            syn::Pat::Ident(i) => i.ident.to_string(),
                            other => other.to_token_stream().to_string(),
                        };
                        params.push((name, (*pt.ty).clone()));
                    }
                }
            }
            self.fns.push(FnDef {
                name: sig.ident.to_string(),
                module: module.to_vec(),
                self_ty,
                trait_,
                has_self,
                params,
                ret: match &sig.output {
                    syn::ReturnType::Type(_, t) => Some((**t).clone()),
                    syn::ReturnType::Default => None,
                },
                bounds,
                block: block.clone(),
                file: file.to_owned(),
                imports,
            });
        }

        fn index(&mut self) {
            for (i, f) in self.fns.iter().enumerate() {
                self.by_name.entry(f.name.clone()).or_default().push(i);
            }
        }

        fn is_ours(&self, name: &str) -> bool {
            let name = self.canonical(name);
            self.structs.contains_key(&name)
                || self.enums.contains(&name)
                || self.traits.contains(&name)
        }

        /// The type a name stands for, through `type` aliases.
        fn canonical(&self, name: &str) -> String {
            let mut name = name.to_owned();
            for _ in 0..8 {
                match self.aliases.get(&name).and_then(type_last_name) {
                    Some(target) if target != name => name = target,
                    _ => break,
                }
            }
            name
        }

        /// What a written type is, in `f` (for `Self` and generic bounds).
        fn ty_of_type(&self, t: &syn::Type, f: &FnDef) -> Ty {
            self.ty_in(t, f.self_ty.as_deref(), &f.bounds)
        }

        fn ty_in(
            &self,
            t: &syn::Type,
            self_ty: Option<&str>,
            bounds: &HashMap<String, Vec<String>>,
        ) -> Ty {
            self.ty_at(t, self_ty, bounds, 0)
        }

        fn ty_at(
            &self,
            t: &syn::Type,
            self_ty: Option<&str>,
            bounds: &HashMap<String, Vec<String>>,
            depth: usize,
        ) -> Ty {
            match t {
                syn::Type::Reference(r) => self.ty_at(&r.elem, self_ty, bounds, depth),
                syn::Type::Paren(p) => self.ty_at(&p.elem, self_ty, bounds, depth),
                syn::Type::Group(g) => self.ty_at(&g.elem, self_ty, bounds, depth),
                syn::Type::TraitObject(o) => self.bounds_ty(&o.bounds),
                syn::Type::Slice(s) => Ty::container(self.ty_at(&s.elem, self_ty, bounds, depth)),
                syn::Type::Array(a) => Ty::container(self.ty_at(&a.elem, self_ty, bounds, depth)),
                syn::Type::Tuple(t) => {
                    // A tuple is foreign when every element is.
                    let mut ty = Ty::Foreign;
                    for e in &t.elems {
                        match self.ty_at(e, self_ty, bounds, depth) {
                            Ty::Foreign => {}
                            other => {
                                ty = Ty::container(other);
                                break;
                            }
                        }
                    }
                    ty
                }
                syn::Type::Ptr(_) | syn::Type::BareFn(_) | syn::Type::Never(_) => Ty::Foreign,
                syn::Type::Infer(_) => Ty::Unknown,
                syn::Type::ImplTrait(i) => self.bounds_ty(&i.bounds),
                syn::Type::Path(p) => {
                    let segs = crate::idents(&p.path);
                    if let Some(krate) = segs.iter().find(|s| s.starts_with("aws_sdk_")) {
                        return if segs.last().map(String::as_str) == Some("Client") {
                            Ty::Sdk(krate.clone())
                        } else {
                            Ty::Foreign
                        };
                    }
                    let last = p.path.segments.last().expect("a path has a segment");
                    let name = last.ident.to_string();
                    match name.as_str() {
                        "Arc" | "Box" | "Rc" | "Option" | "Result" | "Pin" => {
                            if let syn::PathArguments::AngleBracketed(a) = &last.arguments {
                                for arg in &a.args {
                                    if let syn::GenericArgument::Type(inner) = arg {
                                        return self.ty_at(inner, self_ty, bounds, depth);
                                    }
                                }
                            }
                            Ty::Unknown
                        }
                        "Self" => self_ty
                            .map(|s| Ty::Ours(s.to_owned()))
                            .unwrap_or(Ty::Unknown),
                        // A type parameter: the first of our traits that bounds it, else unknown.
                        _ if bounds.contains_key(&name) => bounds[&name]
                            .iter()
                            .find(|b| self.traits.contains(*b))
                            .map(|b| Ty::Ours(b.clone()))
                            .unwrap_or(Ty::Unknown),
                        // A type alias: what it stands for.
                        _ if self.aliases.contains_key(&name) && depth < 8 => {
                            let target = self.aliases[&name].clone();
                            self.ty_at(&target, self_ty, bounds, depth + 1)
                        }
                        _ if self.is_ours(&name) => Ty::Ours(name),
                        _ => {
                            // Vec<T>, HashMap<K, V>, Mutex<T>: foreign when no argument is
                            // ours, else a container of the first that is.
                            for seg in &p.path.segments {
                                if let syn::PathArguments::AngleBracketed(a) = &seg.arguments {
                                    for arg in &a.args {
                                        if let syn::GenericArgument::Type(inner) = arg {
                                            match self.ty_at(inner, self_ty, bounds, depth) {
                                                Ty::Foreign => {}
                                                Ty::Unknown => return Ty::Unknown,
                                                Ty::Std(t) => return Ty::Std(t),
                                                t => return Ty::Std(Box::new(t)),
                                            }
                                        }
                                    }
                                }
                            }
                            Ty::Foreign
                        }
                    }
                }
                _ => Ty::Unknown,
            }
        }

        fn bounds_ty(&self, bounds: &Punctuated<syn::TypeParamBound, syn::Token![+]>) -> Ty {
            for b in bounds {
                if let syn::TypeParamBound::Trait(t) = b {
                    if let Some(s) = t.path.segments.last() {
                        let name = s.ident.to_string();
                        if self.traits.contains(&name) {
                            return Ty::Ours(name);
                        }
                    }
                }
            }
            Ty::Unknown
        }

        /// Methods named `method` a value of type `owner` may run: the type's own and its
        /// traits' defaults; for a trait, its implementations by constructed types.
        fn methods_of(&self, owner: &str, method: &str, built: &HashSet<String>) -> Vec<usize> {
            let owner = &self.canonical(owner);
            let Some(cands) = self.by_name.get(method) else {
                return Vec::new();
            };
            let is_trait = self.traits.contains(owner);
            cands
                .iter()
                .copied()
                .filter(|&i| {
                    let f = &self.fns[i];
                    let Some(st) = &f.self_ty else { return false };
                    if is_trait {
                        (st == owner) || (f.trait_.as_deref() == Some(owner) && built.contains(st))
                    } else {
                        st == owner || self.impls.contains(&(owner.to_owned(), st.clone()))
                    }
                })
                .collect()
        }

        /// Runs the scan from `entries`: reachable functions until the set of constructed
        /// types stops growing, then the SDK calls with their index names.
        fn analyze(&mut self, entries: &[usize]) -> Report {
            let mut built: HashSet<String> = HashSet::new();
            let (facts, reach) = loop {
                let mut facts: HashMap<usize, Facts> = HashMap::new();
                let mut reach: HashMap<usize, Option<usize>> = HashMap::new();
                let mut queue: VecDeque<usize> = VecDeque::new();
                for &e in entries {
                    reach.insert(e, None);
                    queue.push_back(e);
                }
                while let Some(i) = queue.pop_front() {
                    let fx = Walker::run(self, i, &built);
                    for (callee, _, _) in &fx.edges {
                        if !reach.contains_key(callee) {
                            reach.insert(*callee, Some(i));
                            queue.push_back(*callee);
                        }
                    }
                    facts.insert(i, fx);
                }
                let now: HashSet<String> = facts
                    .values()
                    .flat_map(|f| f.built.iter().cloned())
                    .collect();
                if now.is_subset(&built) {
                    break (facts, reach);
                }
                built.extend(now);
            };

            // Effects: (sdk, op, target) per function, through the call graph to a fixpoint.
            type Effect = (String, String, Target);
            let mut effects: HashMap<usize, BTreeMap<Effect, Loc>> = HashMap::new();
            let mut problems: Vec<String> = std::mem::take(&mut self.problems);
            for (i, fx) in &facts {
                let mut own = BTreeMap::new();
                for op in &fx.ops {
                    own.insert(
                        (op.sdk.clone(), op.op.clone(), op.target.clone()),
                        op.at.clone(),
                    );
                }
                effects.insert(*i, own);
                problems.extend(fx.problems.iter().cloned());
            }
            loop {
                let mut changed = false;
                for (i, fx) in &facts {
                    let mut add: Vec<(Effect, Loc)> = Vec::new();
                    for (callee, args, at) in &fx.edges {
                        let Some(theirs) = effects.get(callee) else {
                            continue;
                        };
                        for ((sdk, op, target), loc) in theirs {
                            let t = match target {
                                Target::Param(p) => match args.get(*p) {
                                    Some(Arg::Lit(s)) => Target::Index(s.clone()),
                                    Some(Arg::None) => Target::Base,
                                    Some(Arg::Param(q)) => Target::Param(*q),
                                    _ => Target::Unresolved(format!(
                                        "{}:{} passes an index name the scan cannot read",
                                        at.0, at.1
                                    )),
                                },
                                other => other.clone(),
                            };
                            add.push(((sdk.clone(), op.clone(), t), loc.clone()));
                        }
                    }
                    let mine = effects.get_mut(i).expect("every reached fn has effects");
                    for (k, v) in add {
                        if let std::collections::btree_map::Entry::Vacant(e) = mine.entry(k) {
                            e.insert(v);
                            changed = true;
                        }
                    }
                }
                if !changed {
                    break;
                }
            }
            let mut calls: BTreeMap<(String, String, Option<String>), Found> = BTreeMap::new();
            for &e in entries {
                for ((sdk, op, target), at) in &effects[&e] {
                    let index = match target {
                        Target::Base => None,
                        Target::Index(i) => Some(i.clone()),
                        Target::Param(_) | Target::Unresolved(_) => {
                            let why = match target {
                                Target::Unresolved(w) => w.clone(),
                                _ => "an index name that comes from outside main".into(),
                            };
                            problems.push(format!("{sdk} {op} at {}:{}: {why}", at.0, at.1));
                            continue;
                        }
                    };
                    let path = self.path_to(&reach, &facts, sdk, op, at);
                    calls
                        .entry((sdk.clone(), op.clone(), index.clone()))
                        .or_insert(Found {
                            sdk: sdk.clone(),
                            operation: op.clone(),
                            index,
                            at: format!("{}:{}", at.0, at.1),
                            path,
                        });
                }
            }
            problems.sort();
            problems.dedup();
            Report {
                calls: calls.into_values().collect(),
                problems,
            }
        }

        /// `main -> build -> ...` to the function whose body makes the call at `at`.
        fn path_to(
            &self,
            reach: &HashMap<usize, Option<usize>>,
            facts: &HashMap<usize, Facts>,
            sdk: &str,
            op: &str,
            at: &Loc,
        ) -> String {
            let Some((&holder, _)) = facts.iter().find(|(_, fx)| {
                fx.ops
                    .iter()
                    .any(|o| o.sdk == sdk && o.op == op && &o.at == at)
            }) else {
                return String::new();
            };
            let mut chain = vec![holder];
            let mut cur = holder;
            while let Some(Some(parent)) = reach.get(&cur) {
                if chain.contains(parent) {
                    break;
                }
                chain.push(*parent);
                cur = *parent;
            }
            chain.reverse();
            chain
                .iter()
                .map(|&i| {
                    let f = &self.fns[i];
                    match &f.self_ty {
                        Some(t) => format!("{t}::{}", f.name),
                        None => f.name.clone(),
                    }
                })
                .collect::<Vec<_>>()
                .join(" -> ")
        }
    }

    /// What a call's index comes from.
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
    enum Target {
        Base,
        Index(String),
        /// The value of this parameter of the enclosing function (`Option<&str>` or `&str`).
        Param(usize),
        Unresolved(String),
    }

    /// An argument, as far as index names go.
    #[derive(Debug, Clone)]
    enum Arg {
        Lit(String),
        None,
        Param(usize),
        Other,
    }

    struct Op {
        sdk: String,
        op: String,
        target: Target,
        at: Loc,
    }

    #[derive(Default)]
    struct Facts {
        /// (callee, its arguments without `self`, where).
        edges: Vec<(usize, Vec<Arg>, Loc)>,
        ops: Vec<Op>,
        built: HashSet<String>,
        problems: Vec<String>,
    }

    struct Walker<'u> {
        u: &'u Universe,
        f: &'u FnDef,
        built: &'u HashSet<String>,
        /// Names in scope, innermost last.
        scopes: Vec<HashMap<String, Ty>>,
        /// The type of the parameters of a closure (by its place), from the call it is
        /// passed to (`x.map(|v| ..)` on a container of T: a T).
        closure_params: HashMap<Loc, Ty>,
        /// `use` inside the function's body.
        local_imports: Vec<Vec<String>>,
        /// Builders: the op, and the index argument seen on it.
        builders: BTreeMap<Loc, (String, String, Option<Arg>)>,
        out: Facts,
    }

    fn loc_of(span: proc_macro2::Span, file: &str) -> Loc {
        let s = span.start();
        (file.to_owned(), s.line, s.column)
    }

    fn pascal(snake: &str) -> String {
        snake
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                match c.next() {
                    Some(first) => first.to_uppercase().chain(c).collect::<String>(),
                    None => String::new(),
                }
            })
            .collect()
    }

    /// Option/Result/iterator methods whose value type is the receiver's whatever their
    /// closures return.
    const SAME_VALUE: &[&str] = &[
        "map_err",
        "ok_or",
        "ok_or_else",
        "unwrap_or",
        "unwrap_or_else",
        "unwrap_or_default",
        "or",
        "or_else",
        "ok",
        "err",
        "filter",
        "inspect",
        "inspect_err",
        "take",
        "copied",
        "cloned",
        "is_some",
        "is_none",
        "is_ok",
        "is_err",
        "is_some_and",
        "is_ok_and",
        "any",
        "all",
        "count",
        "len",
        "is_empty",
        "contains",
        "contains_key",
        "retain",
        "sort_by",
        "sort_by_key",
        "dedup_by_key",
        "position",
    ];

    /// Methods that hand back (a view of) their receiver.
    const PASS_THROUGH: &[&str] = &[
        "clone", "as_ref", "as_deref", "borrow", "to_owned", "unwrap", "expect", "as_mut",
    ];

    impl<'u> Walker<'u> {
        fn run(u: &'u Universe, i: usize, built: &'u HashSet<String>) -> Facts {
            let f = &u.fns[i];
            let mut w = Walker {
                u,
                f,
                built,
                scopes: vec![HashMap::new()],
                closure_params: HashMap::new(),
                local_imports: Vec::new(),
                builders: BTreeMap::new(),
                out: Facts::default(),
            };
            for (name, t) in &f.params {
                let ty = u.ty_of_type(t, f);
                w.set(name.clone(), ty);
            }
            // One pass in source order: Rust declares a name before its use, so every `let`
            // is typed before the calls that use it.
            w.visit_block(&f.block);
            for (at, (sdk, op, index)) in std::mem::take(&mut w.builders) {
                let target = match index {
                    None | Some(Arg::None) => Target::Base,
                    Some(Arg::Lit(s)) => Target::Index(s),
                    Some(Arg::Param(p)) => Target::Param(p),
                    Some(Arg::Other) => Target::Unresolved(format!(
                        "{}:{}: the index name is not a literal or a parameter",
                        at.0, at.1
                    )),
                };
                w.out.ops.push(Op {
                    sdk,
                    op,
                    target,
                    at,
                });
            }
            w.out
        }

        fn loc(&self, span: proc_macro2::Span) -> Loc {
            loc_of(span, &self.f.file)
        }

        fn lookup(&self, name: &str) -> Option<&Ty> {
            self.scopes.iter().rev().find_map(|s| s.get(name))
        }

        fn set(&mut self, name: String, ty: Ty) {
            self.scopes.last_mut().expect("a scope").insert(name, ty);
        }

        fn push(&mut self) {
            self.scopes.push(HashMap::new());
        }

        fn pop(&mut self) {
            self.scopes.pop();
        }

        fn bind(&mut self, pat: &syn::Pat, ty: Ty) {
            match pat {
                syn::Pat::Ident(i) => self.set(i.ident.to_string(), ty),
                syn::Pat::Type(pt) => {
                    let ty = self.u.ty_of_type(&pt.ty, self.f);
                    self.bind(&pt.pat, ty);
                }
                // Tuples, structs, slices: every name in them, type unknown.
                other => self.bind_all(other, Ty::Unknown),
            }
        }

        /// Binds the names of a pattern matched against a value of type `scrutinee`.
        fn bind_matched(&mut self, pat: &syn::Pat, scrutinee: Ty) {
            match pat {
                _ if scrutinee == Ty::Foreign => self.bind_all(pat, Ty::Foreign),
                _ if matches!(scrutinee, Ty::Std(_)) => self.bind_all(pat, scrutinee),
                syn::Pat::Ident(_) | syn::Pat::Type(_) => self.bind(pat, scrutinee),
                syn::Pat::Reference(r) => self.bind_matched(&r.pat, scrutinee),
                syn::Pat::Paren(p) => self.bind_matched(&p.pat, scrutinee),
                syn::Pat::Or(o) => {
                    for c in &o.cases {
                        self.bind_matched(c, scrutinee.clone());
                    }
                }
                syn::Pat::TupleStruct(ts)
                    if (ts.path.is_ident("Some") || ts.path.is_ident("Ok"))
                        && ts.elems.len() == 1 =>
                {
                    self.bind_matched(&ts.elems[0], scrutinee)
                }
                other => self.bind_all(other, Ty::Unknown),
            }
        }

        fn bind_all(&mut self, pat: &syn::Pat, ty: Ty) {
            struct Names(Vec<String>);
            impl<'a> Visit<'a> for Names {
                fn visit_pat_ident(&mut self, i: &'a syn::PatIdent) {
                    self.0.push(i.ident.to_string());
                }
            }
            let mut n = Names(Vec::new());
            n.visit_pat(pat);
            for name in n.0 {
                self.set(name, ty.clone());
            }
        }

        /// The candidates a path call or path value may be.
        fn resolve_path(&self, path: &syn::Path) -> Vec<usize> {
            let segs: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            let last = segs.last().expect("a path has a segment").clone();
            let Some(cands) = self.u.by_name.get(&last) else {
                return Vec::new();
            };
            let u = self.u;
            let same_crate = |i: &usize| u.fns[*i].module.first() == self.f.module.first();
            if segs.len() >= 2 {
                let q = &segs[segs.len() - 2];
                let owner = if q == "Self" {
                    self.f.self_ty.clone()
                } else {
                    Some(u.canonical(q))
                };
                if let Some(owner) = owner.filter(|o| u.is_ours(o)) {
                    return u.methods_of(&owner, &last, self.built);
                }
                if matches!(q.as_str(), "crate" | "self" | "super") {
                    return cands
                        .iter()
                        .copied()
                        .filter(|i| u.fns[*i].self_ty.is_none() && same_crate(i))
                        .collect();
                }
                return cands
                    .iter()
                    .copied()
                    .filter(|i| {
                        let f = &u.fns[*i];
                        f.self_ty.is_none() && f.module.last() == Some(q)
                    })
                    .collect();
            }
            let free: Vec<usize> = cands
                .iter()
                .copied()
                .filter(|i| u.fns[*i].self_ty.is_none())
                .collect();
            let here: Vec<usize> = free
                .iter()
                .copied()
                .filter(|i| u.fns[*i].module == self.f.module)
                .collect();
            if !here.is_empty() {
                return here;
            }
            let mut imported = Vec::new();
            for imp in u.imports[self.f.imports].iter().chain(&self.local_imports) {
                let n = imp.len();
                if n >= 2 && (imp[n - 1] == last || imp[n - 1] == "*") {
                    let from = &imp[n - 2];
                    imported.extend(
                        free.iter()
                            .copied()
                            .filter(|i| u.fns[*i].module.last() == Some(from)),
                    );
                }
            }
            if !imported.is_empty() {
                return imported;
            }
            if self.lookup(&last).is_some() {
                return Vec::new(); // a local closure or value
            }
            free
        }

        fn note_built(&mut self, path: &syn::Path) {
            for s in &path.segments {
                let name = s.ident.to_string();
                let name = if name == "Self" {
                    match &self.f.self_ty {
                        Some(t) => t.clone(),
                        None => continue,
                    }
                } else {
                    self.u.canonical(&name)
                };
                if self.u.structs.contains_key(&name) || self.u.enums.contains(&name) {
                    // `T::f(..)`, `T { .. }`, a unit `T`: a T may exist.
                    self.out.built.insert(name);
                }
            }
        }

        fn ret_ty(&self, i: usize) -> Ty {
            let callee = &self.u.fns[i];
            match &callee.ret {
                Some(t) => self.u.ty_of_type(t, callee),
                None => Ty::Foreign,
            }
        }

        /// The type of an expression, as far as fields, parameters, locals and return types tell.
        fn ty(&self, e: &syn::Expr) -> Ty {
            match e {
                syn::Expr::Path(p) if p.path.segments.len() == 1 => {
                    let name = p.path.segments[0].ident.to_string();
                    if name == "self" {
                        return self.f.self_ty.clone().map(Ty::Ours).unwrap_or(Ty::Unknown);
                    }
                    if let Some(t) = self.lookup(&name) {
                        return t.clone();
                    }
                    if self.u.structs.contains_key(&name) {
                        return Ty::Ours(name);
                    }
                    if let Some(t) = self.u.consts.get(&name) {
                        return self.u.ty_in(t, None, &HashMap::new());
                    }
                    Ty::Unknown
                }
                syn::Expr::Path(p) => {
                    // `Type::CONST`, `Enum::Variant`, `std::time::Duration::ZERO`.
                    let segs = crate::idents(&p.path);
                    let last = &segs[segs.len() - 1];
                    let q = &segs[segs.len() - 2];
                    if let Some(t) = self.u.consts.get(last) {
                        return self.u.ty_in(t, self.f.self_ty.as_deref(), &HashMap::new());
                    }
                    let q = if q == "Self" {
                        self.f.self_ty.clone().unwrap_or_default()
                    } else {
                        self.u.canonical(q)
                    };
                    if self.u.enums.contains(&q) {
                        Ty::Ours(q)
                    } else if self.u.is_ours(&q) || self.u.by_name.contains_key(last) {
                        Ty::Unknown
                    } else {
                        Ty::Foreign
                    }
                }
                syn::Expr::Field(fe) => {
                    let base = self.ty(&fe.base);
                    let member = match &fe.member {
                        syn::Member::Named(i) => i.to_string(),
                        syn::Member::Unnamed(i) => i.index.to_string(),
                    };
                    match base {
                        Ty::Ours(s) => match self.u.structs.get(&s).and_then(|f| f.get(&member)) {
                            Some(t) => self.u.ty_in(t, Some(&s), &HashMap::new()),
                            None => Ty::Unknown,
                        },
                        Ty::Foreign => Ty::Foreign,
                        _ => Ty::Unknown,
                    }
                }
                syn::Expr::Reference(r) => self.ty(&r.expr),
                syn::Expr::Paren(p) => self.ty(&p.expr),
                syn::Expr::Group(g) => self.ty(&g.expr),
                syn::Expr::Try(t) => self.ty(&t.expr),
                syn::Expr::Await(a) => self.ty(&a.base),
                syn::Expr::Unary(un) => self.ty(&un.expr),
                syn::Expr::Struct(s) => {
                    let name = crate::last_ident(&s.path);
                    if name == "Self" {
                        self.f.self_ty.clone().map(Ty::Ours).unwrap_or(Ty::Unknown)
                    } else if self.u.is_ours(&name) {
                        Ty::Ours(self.u.canonical(&name))
                    } else {
                        Ty::Foreign
                    }
                }
                syn::Expr::Lit(_) => Ty::Foreign,
                syn::Expr::MethodCall(mc) => {
                    let recv = self.ty(&mc.receiver);
                    let m = mc.method.to_string();
                    if PASS_THROUGH.contains(&m.as_str()) {
                        return recv;
                    }
                    match recv {
                        Ty::Sdk(_) if m == "config" => Ty::Foreign,
                        Ty::Sdk(_) => Ty::Builder(self.loc(mc.method.span())),
                        Ty::Builder(_) if m == "send" => Ty::Foreign,
                        Ty::Builder(id) => Ty::Builder(id),
                        Ty::Ours(owner) => {
                            let cands = self.u.methods_of(&owner, &m, self.built);
                            let mut tys: Vec<Ty> = cands.iter().map(|&i| self.ret_ty(i)).collect();
                            if cands.is_empty() {
                                if let Some(Some(t)) =
                                    self.u.trait_sigs.get(&(owner.clone(), m.clone()))
                                {
                                    tys.push(self.u.ty_of_type(t, self.f));
                                }
                            }
                            tys.dedup();
                            if tys.len() == 1 {
                                tys.remove(0)
                            } else {
                                Ty::Unknown
                            }
                        }
                        Ty::Std(elem) => {
                            let elem = *elem;
                            if let Ty::Ours(owner) = &elem {
                                let cands = self.u.methods_of(owner, &m, self.built);
                                let mut tys: Vec<Ty> =
                                    cands.iter().map(|&i| self.ret_ty(i)).collect();
                                tys.dedup();
                                if tys.len() == 1 {
                                    return tys.remove(0);
                                }
                            }
                            Ty::Std(Box::new(elem))
                        }
                        // A foreign method hands back something foreign, unless it is given
                        // one of our values or a closure (`cell.get_or_init(|| Hub::new())`);
                        // `map_err`, `unwrap_or_else`, ... keep the receiver's value type.
                        Ty::Foreign if SAME_VALUE.contains(&m.as_str()) => Ty::Foreign,
                        Ty::Foreign => self.foreign_result(&mc.args),
                        _ => Ty::Unknown,
                    }
                }
                syn::Expr::Call(c) => {
                    let syn::Expr::Path(p) = &*c.func else {
                        return Ty::Unknown;
                    };
                    let segs = crate::idents(&p.path);
                    if let Some(krate) = segs.iter().find(|s| s.starts_with("aws_sdk_")) {
                        if segs.iter().any(|s| s == "Client") {
                            return Ty::Sdk(krate.clone());
                        }
                        return Ty::Foreign;
                    }
                    let last = segs.last().cloned().unwrap_or_default();
                    if segs.len() >= 2
                        && matches!(segs[segs.len() - 2].as_str(), "Arc" | "Box" | "Rc" | "Pin")
                        && last == "new"
                        || matches!(last.as_str(), "Some" | "Ok")
                    {
                        return c.args.first().map(|a| self.ty(a)).unwrap_or(Ty::Unknown);
                    }
                    let cands = self.resolve_path(&p.path);
                    let mut tys: Vec<Ty> = cands.iter().map(|&i| self.ret_ty(i)).collect();
                    tys.dedup();
                    if tys.len() == 1 {
                        return tys.remove(0);
                    }
                    if segs.len() >= 2 {
                        let q = &segs[segs.len() - 2];
                        if self.u.is_ours(q) && cands.is_empty() {
                            return Ty::Ours(self.u.canonical(q)); // a tuple variant or derived constructor
                        }
                        if !self.u.is_ours(q) && q != "Self" && cands.is_empty() {
                            return self.foreign_result(&c.args);
                        }
                    }
                    if segs.len() == 1 && cands.is_empty() && self.lookup(&last).is_none() {
                        return self.foreign_result(&c.args);
                    }
                    Ty::Unknown
                }
                syn::Expr::Index(i) => match self.ty(&i.expr) {
                    Ty::Foreign => Ty::Foreign,
                    Ty::Std(t) => Ty::Std(t),
                    _ => Ty::Unknown,
                },
                syn::Expr::Macro(m) => {
                    let name = crate::last_ident(&m.mac.path);
                    if matches!(
                        name.as_str(),
                        "format" | "concat" | "stringify" | "matches" | "env" | "include_str"
                    ) {
                        Ty::Foreign
                    } else {
                        Ty::Unknown
                    }
                }
                syn::Expr::Cast(_) | syn::Expr::Binary(_) | syn::Expr::Range(_) => Ty::Foreign,
                _ => Ty::Unknown,
            }
        }

        /// What a call into another crate returns: foreign, unless something of ours goes in
        /// (`futures::stream::iter(users)`): then a container of it.
        fn foreign_result(&self, args: &Punctuated<syn::Expr, syn::Token![,]>) -> Ty {
            for a in args {
                match self.ty(a) {
                    Ty::Foreign => {}
                    other => return Ty::container(other),
                }
            }
            Ty::Foreign
        }

        fn arg(&self, e: &syn::Expr) -> Arg {
            match e {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Arg::Lit(s.value()),
                syn::Expr::Reference(r) => self.arg(&r.expr),
                syn::Expr::Paren(p) => self.arg(&p.expr),
                syn::Expr::Group(g) => self.arg(&g.expr),
                syn::Expr::Path(p) if p.path.is_ident("None") => Arg::None,
                syn::Expr::Path(p) if p.path.segments.len() == 1 => {
                    let name = p.path.segments[0].ident.to_string();
                    match self.f.params.iter().position(|(n, _)| *n == name) {
                        Some(i) => Arg::Param(i),
                        None => Arg::Other,
                    }
                }
                syn::Expr::Call(c) => match &*c.func {
                    syn::Expr::Path(p) if p.path.is_ident("Some") && c.args.len() == 1 => {
                        self.arg(&c.args[0])
                    }
                    _ => Arg::Other,
                },
                syn::Expr::MethodCall(mc)
                    if matches!(
                        mc.method.to_string().as_str(),
                        "map"
                            | "as_deref"
                            | "to_owned"
                            | "to_string"
                            | "into"
                            | "as_str"
                            | "clone"
                            | "as_ref"
                    ) =>
                {
                    self.arg(&mc.receiver)
                }
                _ => Arg::Other,
            }
        }

        fn edge(&mut self, callee: usize, args: Vec<Arg>, at: Loc) {
            self.out.edges.push((callee, args, at));
        }
    }

    impl<'a> Visit<'a> for Walker<'_> {
        fn visit_block(&mut self, b: &'a syn::Block) {
            self.push();
            syn::visit::visit_block(self, b);
            self.pop();
        }

        fn visit_local(&mut self, l: &'a syn::Local) {
            // The initializer first: the new name is not in scope in it.
            syn::visit::visit_local(self, l);
            let ty = match &l.init {
                Some(init) => self.ty(&init.expr),
                None => Ty::Unknown,
            };
            self.bind_matched(&l.pat, ty);
        }

        fn visit_item_use(&mut self, u: &'a syn::ItemUse) {
            flatten_use(&u.tree, &mut Vec::new(), &mut self.local_imports);
        }

        fn visit_expr_let(&mut self, l: &'a syn::ExprLet) {
            self.visit_expr(&l.expr);
            let ty = self.ty(&l.expr);
            self.bind_matched(&l.pat, ty);
        }

        fn visit_expr_if(&mut self, i: &'a syn::ExprIf) {
            self.push();
            self.visit_expr(&i.cond);
            self.visit_block(&i.then_branch);
            self.pop();
            if let Some((_, e)) = &i.else_branch {
                self.visit_expr(e);
            }
        }

        fn visit_expr_while(&mut self, w: &'a syn::ExprWhile) {
            self.push();
            self.visit_expr(&w.cond);
            self.visit_block(&w.body);
            self.pop();
        }

        fn visit_expr_match(&mut self, m: &'a syn::ExprMatch) {
            self.visit_expr(&m.expr);
            let ty = self.ty(&m.expr);
            for arm in &m.arms {
                self.push();
                self.bind_matched(&arm.pat, ty.clone());
                if let Some((_, guard)) = &arm.guard {
                    self.visit_expr(guard);
                }
                self.visit_expr(&arm.body);
                self.pop();
            }
        }

        fn visit_expr_for_loop(&mut self, f: &'a syn::ExprForLoop) {
            self.visit_expr(&f.expr);
            let ty = match self.ty(&f.expr) {
                Ty::Foreign => Ty::Foreign,
                Ty::Std(t) => Ty::Std(t),
                _ => Ty::Unknown,
            };
            self.push();
            self.bind_all(&f.pat, ty);
            self.visit_block(&f.body);
            self.pop();
        }

        fn visit_expr_closure(&mut self, c: &'a syn::ExprClosure) {
            let given = self.closure_params.get(&self.loc(c.span())).cloned();
            self.push();
            for p in &c.inputs {
                match &given {
                    Some(t) => self.bind_matched(p, t.clone()),
                    None => self.bind(p, Ty::Unknown),
                }
            }
            self.visit_expr(&c.body);
            self.pop();
        }

        fn visit_expr_method_call(&mut self, mc: &'a syn::ExprMethodCall) {
            // `foreign.map(|x| ..)`: x is foreign; `container_of_t.map(|x| ..)`: x is a T.
            let elem = match self.ty(&mc.receiver) {
                Ty::Foreign => Some(Ty::Foreign),
                Ty::Std(t) => Some(Ty::Std(t)),
                _ => None,
            };
            if let Some(elem) = elem {
                for a in &mc.args {
                    if let syn::Expr::Closure(c) = a {
                        let at = self.loc(c.span());
                        self.closure_params.insert(at, elem.clone());
                    }
                }
            }
            // The receiver first: a builder is made before its setters run.
            syn::visit::visit_expr_method_call(self, mc);
            {
                let recv = self.ty(&mc.receiver);
                let m = mc.method.to_string();
                let at = self.loc(mc.method.span());
                let args: Vec<Arg> = mc.args.iter().map(|a| self.arg(a)).collect();
                match &recv {
                    Ty::Sdk(krate) if !PASS_THROUGH.contains(&m.as_str()) && m != "config" => {
                        self.builders
                            .insert(at.clone(), (krate.clone(), pascal(&m), None));
                    }
                    Ty::Builder(id) if m == "index_name" || m == "set_index_name" => {
                        let a = args.first().cloned().unwrap_or(Arg::Other);
                        if let Some(b) = self.builders.get_mut(id) {
                            b.2 = Some(a);
                        }
                    }
                    Ty::Ours(owner) => {
                        for c in self.u.methods_of(owner, &m, self.built) {
                            self.edge(c, args.clone(), at.clone());
                        }
                    }
                    Ty::Std(elem) => {
                        if let Ty::Ours(owner) = &**elem {
                            for c in self.u.methods_of(owner, &m, self.built) {
                                self.edge(c, args.clone(), at.clone());
                            }
                        }
                    }
                    Ty::Unknown if m == "send" && mc.args.is_empty() => {
                        self.out.problems.push(format!(
                            "{}:{}: `.send()` on a value the scan cannot tell the type of (an SDK \
                             call whose client it cannot see?): bind the client to a typed field, \
                             parameter or `let`",
                            at.0, at.1
                        ));
                    }
                    Ty::Unknown => {
                        // Any method of that name and arity of a type this function constructs.
                        let u = self.u;
                        if let Some(cands) = u.by_name.get(&m) {
                            for &c in cands {
                                let f = &u.fns[c];
                                let owner_built = f.self_ty.as_ref().is_some_and(|t| {
                                    self.built.contains(t)
                                        || (u.traits.contains(t)
                                            && u.impls
                                                .iter()
                                                .any(|(ty, tr)| tr == t && self.built.contains(ty)))
                                });
                                if f.has_self && owner_built && f.params.len() == mc.args.len() {
                                    if std::env::var_os("PERMISSIONS_DEBUG").is_some() {
                                        eprintln!(
                                            "{}:{}: untyped receiver of .{m}(): may be {}::{m}",
                                            at.0,
                                            at.1,
                                            f.self_ty.as_deref().unwrap_or("?")
                                        );
                                    }
                                    self.edge(c, args.clone(), at.clone());
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }

        fn visit_expr_call(&mut self, c: &'a syn::ExprCall) {
            if let syn::Expr::Path(p) = &*c.func {
                {
                    self.note_built(&p.path);
                    let at = self.loc(p.span());
                    let mut args: Vec<Arg> = c.args.iter().map(|a| self.arg(a)).collect();
                    for callee in self.resolve_path(&p.path) {
                        let mut a = args.clone();
                        if self.u.fns[callee].has_self && !a.is_empty() {
                            a.remove(0);
                        }
                        self.edge(callee, a, at.clone());
                    }
                    args.clear();
                }
                for a in &c.args {
                    self.visit_expr(a);
                }
                return;
            }
            syn::visit::visit_expr_call(self, c);
        }

        fn visit_expr_path(&mut self, p: &'a syn::ExprPath) {
            {
                // A function used as a value (`.map(Self::from_item)`), or a unit struct.
                self.note_built(&p.path);
                let at = self.loc(p.span());
                for callee in self.resolve_path(&p.path) {
                    let n = self.u.fns[callee].params.len();
                    self.edge(callee, vec![Arg::Other; n], at.clone());
                }
            }
            syn::visit::visit_expr_path(self, p);
        }

        fn visit_expr_struct(&mut self, s: &'a syn::ExprStruct) {
            self.note_built(&s.path);
            syn::visit::visit_expr_struct(self, s);
        }

        fn visit_macro(&mut self, m: &'a syn::Macro) {
            // Macro arguments that are expressions (`tokio::join!`, `vec!`, `format!`) are read.
            let parsed =
                m.parse_body_with(Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated);
            match parsed {
                Ok(exprs) => {
                    for e in &exprs {
                        self.visit_expr(e);
                    }
                }
                Err(_) => {
                    let text = m.tokens.to_string().replace(' ', "");
                    if text.contains(".send()") || text.contains("aws_sdk_") {
                        let at = self.loc(m.path.span());
                        self.out.problems.push(format!(
                            "{}:{}: a macro the scan cannot read contains an AWS call",
                            at.0, at.1
                        ));
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// `template.yaml`, evaluated per combination of parameters.
mod cfn {
    use super::{Call, On};
    use serde_norway::{Mapping, Value};
    use std::cell::RefCell;
    use std::collections::{BTreeMap, BTreeSet, HashMap};
    use std::path::Path;

    const REGION: &str = "us-east-1";
    const ACCOUNT: &str = "123456789012";
    /// The parameter with the customer-managed KMS key of a secret the stack does not create.
    const SECRET_KMS_KEY_PARAMETER: &str = "JwtSecretKmsKeyArn";

    /// An evaluated value.
    #[derive(Debug, Clone, PartialEq)]
    enum Val {
        S(String),
        L(Vec<Val>),
        M(Vec<(String, Val)>),
        NoValue,
    }

    impl Val {
        fn s(&self) -> Option<&str> {
            match self {
                Val::S(s) => Some(s),
                _ => None,
            }
        }
        fn strings(&self) -> Vec<String> {
            match self {
                Val::S(s) => vec![s.clone()],
                Val::L(l) => l.iter().flat_map(Val::strings).collect(),
                _ => Vec::new(),
            }
        }
        fn get(&self, key: &str) -> Option<&Val> {
            match self {
                Val::M(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }
    }

    pub struct Template {
        root: Value,
    }

    /// Parameter values and the conditions they make true.
    struct Scenario<'t> {
        t: &'t Template,
        params: HashMap<String, Val>,
        conditions: RefCell<HashMap<String, bool>>,
        /// `name=value` of the parameters that differ from their defaults.
        label: String,
    }

    fn key(k: &str) -> Value {
        Value::String(k.to_owned())
    }

    /// An intrinsic function: its long name (`Ref`, `Fn::If`, `Condition`) and its argument.
    fn intrinsic(v: &Value, conditions: bool) -> Option<(String, &Value)> {
        match v {
            Value::Tagged(t) => {
                let tag = t.tag.to_string();
                let tag = tag.trim_start_matches('!');
                let name = match tag {
                    "Ref" | "Condition" => tag.to_owned(),
                    other => format!("Fn::{other}"),
                };
                Some((name, &t.value))
            }
            Value::Mapping(m) if m.len() == 1 => {
                let (k, arg) = m.iter().next().expect("one entry");
                let k = k.as_str()?;
                if k == "Ref" || k.starts_with("Fn::") || (conditions && k == "Condition") {
                    Some((k.to_owned(), arg))
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    fn scalar(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    impl Template {
        pub fn load(path: &Path) -> Self {
            Self::parse(&std::fs::read_to_string(path).expect("template.yaml"))
        }

        pub fn parse(text: &str) -> Self {
            Self {
                root: serde_norway::from_str(text).expect("template.yaml is YAML"),
            }
        }

        fn section(&self, name: &str) -> &Mapping {
            static EMPTY: std::sync::OnceLock<Mapping> = std::sync::OnceLock::new();
            self.root
                .get(name)
                .and_then(Value::as_mapping)
                .unwrap_or_else(|| EMPTY.get_or_init(Mapping::new))
        }

        fn resource_type(&self, name: &str) -> Option<String> {
            self.root
                .get("Resources")?
                .get(name)?
                .get("Type")?
                .as_str()
                .map(str::to_owned)
        }

        /// Test helper: edits the `Action` list of the first statement on DynamoDB in a
        /// function's policies.
        pub fn edit_dynamodb_actions(
            &mut self,
            function: &str,
            edit: impl FnOnce(&mut Vec<String>),
        ) {
            let mut edit = Some(edit);
            let policies = self
                .root
                .get_mut("Resources")
                .and_then(|r| r.get_mut(function))
                .and_then(|f| f.get_mut("Properties"))
                .and_then(|p| p.get_mut("Policies"))
                .and_then(Value::as_sequence_mut)
                .expect("the function has Policies");
            for p in policies {
                let Some(statements) = p.get_mut("Statement").and_then(Value::as_sequence_mut)
                else {
                    continue;
                };
                for st in statements {
                    let mut list: Vec<String> = match st.get("Action") {
                        Some(Value::String(x)) => vec![x.clone()],
                        Some(Value::Sequence(x)) => x.iter().filter_map(scalar).collect(),
                        _ => continue,
                    };
                    if !list.iter().any(|a| a.starts_with("dynamodb:")) {
                        continue;
                    }
                    if let Some(edit) = edit.take() {
                        edit(&mut list);
                        st["Action"] =
                            Value::Sequence(list.into_iter().map(Value::String).collect());
                        return;
                    }
                }
            }
            panic!("no statement on DynamoDB in the policies of {function}");
        }

        /// Every parameter combination that matters to a condition or a rule and that the
        /// rules accept.
        fn scenarios(&self) -> Vec<Scenario<'_>> {
            let params = self.section("Parameters");
            let mut used = BTreeSet::new();
            fn refs(v: &Value, out: &mut BTreeSet<String>) {
                if let Some((name, arg)) = intrinsic(v, true) {
                    if name == "Ref" {
                        if let Some(s) = arg.as_str() {
                            out.insert(s.to_owned());
                        }
                        return;
                    }
                    refs(arg, out);
                    return;
                }
                match v {
                    Value::Sequence(s) => s.iter().for_each(|x| refs(x, out)),
                    Value::Mapping(m) => m.values().for_each(|x| refs(x, out)),
                    Value::Tagged(t) => refs(&t.value, out),
                    _ => {}
                }
            }
            refs(
                &Value::Mapping(self.section("Conditions").clone()),
                &mut used,
            );
            refs(&Value::Mapping(self.section("Rules").clone()), &mut used);
            let mut axes: Vec<(String, Vec<Val>)> = Vec::new();
            for name in used {
                let Some(p) = params.get(key(&name)) else {
                    continue;
                };
                let ty = p.get("Type").and_then(Value::as_str).unwrap_or("String");
                let default = p.get("Default").and_then(scalar).unwrap_or_default();
                let list = ty.starts_with("CommaDelimitedList") || ty.starts_with("List<");
                let as_val = |s: &str| {
                    if list {
                        Val::L(s.split(',').map(|x| Val::S(x.trim().to_owned())).collect())
                    } else {
                        Val::S(s.to_owned())
                    }
                };
                let mut values = vec![as_val(&default)];
                if let Some(allowed) = p.get("AllowedValues").and_then(Value::as_sequence) {
                    for a in allowed.iter().filter_map(scalar) {
                        if a != default {
                            values.push(as_val(&a));
                        }
                    }
                } else if ty == "Number" {
                    let d: i64 = default.parse().unwrap_or(0);
                    let max = p
                        .get("MaxValue")
                        .and_then(scalar)
                        .and_then(|m| m.parse().ok());
                    let other = if max.is_some_and(|m: i64| d + 1 > m) {
                        d - 1
                    } else {
                        d + 1
                    };
                    values.push(as_val(&other.to_string()));
                } else if default.is_empty() {
                    values.push(as_val(&format!("{name}-sample")));
                } else {
                    values.push(as_val(""));
                }
                axes.push((name, values));
            }
            // Combinations that agree on every condition and on the parameters the functions,
            // their event sources and the secret read are checked once.
            let mut relevant = BTreeSet::new();
            refs(
                self.root.get("Globals").unwrap_or(&Value::Null),
                &mut relevant,
            );
            for r in self.section("Resources").values() {
                if matches!(
                    r.get("Type").and_then(Value::as_str),
                    Some(
                        "AWS::Serverless::Function"
                            | "AWS::Lambda::EventSourceMapping"
                            | "AWS::SecretsManager::Secret"
                    )
                ) {
                    refs(r, &mut relevant);
                }
            }
            relevant.insert(SECRET_KMS_KEY_PARAMETER.to_owned());
            let condition_names: Vec<String> = self
                .section("Conditions")
                .keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect();
            let mut signatures = BTreeSet::new();
            let mut out = Vec::new();
            let total: usize = axes.iter().map(|(_, v)| v.len()).product();
            for n in 0..total {
                let mut rest = n;
                let mut chosen = HashMap::new();
                let mut label = Vec::new();
                for (name, values) in &axes {
                    let k = rest % values.len();
                    rest /= values.len();
                    if k != 0 {
                        label.push(format!("{name}={}", values[k].strings().join(",")));
                    }
                    chosen.insert(name.clone(), values[k].clone());
                }
                let sc = Scenario {
                    t: self,
                    params: chosen,
                    conditions: RefCell::new(HashMap::new()),
                    label: if label.is_empty() {
                        "the defaults".into()
                    } else {
                        label.join(" ")
                    },
                };
                if !sc.rules_hold() {
                    continue;
                }
                let signature = (
                    condition_names
                        .iter()
                        .map(|c| sc.condition(c))
                        .collect::<Vec<bool>>(),
                    relevant
                        .iter()
                        .map(|p| format!("{:?}", sc.params.get(p)))
                        .collect::<Vec<String>>(),
                );
                if signatures.insert(signature) {
                    out.push(sc);
                }
            }
            assert!(
                !out.is_empty(),
                "no parameter combination passes the template's Rules"
            );
            out
        }

        /// The functions' policies against what their declared calls and event sources need,
        /// in every scenario. One line per problem, with the first scenario it shows in.
        pub fn check_policies(&self, functions: &[(&str, &[Call])]) -> Vec<String> {
            let mut seen: BTreeMap<String, (usize, String)> = BTreeMap::new();
            let resources = self.section("Resources");
            let mut binaries = BTreeSet::new();
            let declared: HashMap<&str, &[Call]> = functions.iter().copied().collect();
            let mut problems = Vec::new();
            for (k, v) in resources {
                let name = k.as_str().unwrap_or_default();
                match v.get("Type").and_then(Value::as_str).unwrap_or_default() {
                    "AWS::Serverless::Function" => {
                        let binary = v
                            .get("Metadata")
                            .and_then(|m| m.get("BuildProperties"))
                            .and_then(|b| b.get("Binary"))
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        if !declared.contains_key(binary) {
                            problems.push(format!(
                                "{name}: builds {binary:?}, not a function crate tests/permissions.rs knows"
                            ));
                        }
                        binaries.insert(binary.to_owned());
                    }
                    t if t.starts_with("AWS::IAM::") || t == "AWS::Lambda::Function" => {
                        problems.push(format!(
                            "{name}: a {t} grants or runs what this check does not follow; give \
                             functions their permissions in their own Policies"
                        ));
                    }
                    _ => {}
                }
            }
            for (name, _) in functions {
                if !binaries.contains(*name) {
                    problems.push(format!("{name}: no function in template.yaml builds it"));
                }
            }
            let mut set_somewhere: BTreeSet<(String, String)> = BTreeSet::new();
            for sc in self.scenarios() {
                for (k, v) in resources {
                    let name = k.as_str().unwrap_or_default();
                    if v.get("Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
                        continue;
                    }
                    if let Some(c) = v.get("Condition").and_then(Value::as_str) {
                        if !sc.condition(c) {
                            continue;
                        }
                    }
                    let binary = v["Metadata"]["BuildProperties"]["Binary"]
                        .as_str()
                        .unwrap_or_default();
                    let Some(calls) = declared.get(binary) else {
                        continue;
                    };
                    for p in sc.function_problems(name, v, calls, &mut set_somewhere) {
                        let line = format!("{binary} ({name}): {p}");
                        seen.entry(line).or_insert((0, sc.label.clone())).0 += 1;
                    }
                }
            }
            for (name, calls) in functions {
                for c in calls.iter().filter(|c| c.sent) {
                    let var = c.on.variable();
                    if !set_somewhere.contains(&(name.to_string(), var.to_owned())) {
                        problems.push(format!(
                            "{name}: declares {} on {var}, which its environment never sets",
                            c.operation
                        ));
                    }
                }
            }
            for (line, (count, first)) in seen {
                problems.push(format!(
                    "{line}   [{count} of the parameter cases, e.g. {first}]"
                ));
            }
            problems.sort();
            problems.dedup();
            problems
        }

        pub fn check_scheduled_retries(&self) -> Vec<String> {
            let mut problems = Vec::new();
            for (k, v) in self.section("Resources") {
                let name = k.as_str().unwrap_or_default();
                if v.get("Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
                    continue;
                }
                let scheduled = v
                    .get("Properties")
                    .and_then(|p| p.get("Events"))
                    .and_then(Value::as_mapping)
                    .is_some_and(|events| {
                        events.values().any(|e| {
                            matches!(
                                e.get("Type").and_then(Value::as_str),
                                Some("Schedule" | "ScheduleV2")
                            )
                        })
                    });
                if !scheduled {
                    continue;
                }
                let retries = v["Properties"]
                    .get("EventInvokeConfig")
                    .and_then(|c| c.get("MaximumRetryAttempts"))
                    .and_then(scalar);
                if retries.as_deref() != Some("0") {
                    problems.push(format!(
                        "{name} runs on a schedule: its EventInvokeConfig must set \
                         MaximumRetryAttempts: 0 (the next scheduled run is the retry), it has {retries:?}"
                    ));
                }
            }
            problems
        }
    }

    impl Scenario<'_> {
        fn param_default(&self, name: &str) -> Option<Val> {
            let p = self.t.root.get("Parameters")?.get(name)?;
            let ty = p.get("Type").and_then(Value::as_str).unwrap_or("String");
            let d = p.get("Default").and_then(scalar).unwrap_or_default();
            Some(
                if ty.starts_with("CommaDelimitedList") || ty.starts_with("List<") {
                    Val::L(d.split(',').map(|x| Val::S(x.trim().to_owned())).collect())
                } else {
                    Val::S(d)
                },
            )
        }

        fn reference(&self, name: &str) -> Val {
            match name {
                "AWS::NoValue" => return Val::NoValue,
                "AWS::Region" => return Val::S(REGION.into()),
                "AWS::AccountId" => return Val::S(ACCOUNT.into()),
                "AWS::Partition" => return Val::S("aws".into()),
                "AWS::URLSuffix" => return Val::S("amazonaws.com".into()),
                "AWS::StackName" => return Val::S("stack".into()),
                "AWS::StackId" => {
                    return Val::S(format!(
                        "arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/stack/0a1b2c3d-0000-1111-2222-333344445555"
                    ));
                }
                "AWS::NotificationARNs" => return Val::L(Vec::new()),
                _ => {}
            }
            if let Some(v) = self.params.get(name) {
                return v.clone();
            }
            if let Some(v) = self.param_default(name) {
                return v;
            }
            match self.t.resource_type(name).as_deref() {
                Some("AWS::SQS::Queue") => Val::S(format!(
                    "https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{{{name}.QueueName}}"
                )),
                Some("AWS::DynamoDB::Table") => Val::S(format!("{{{name}.TableName}}")),
                Some(_) => Val::S(format!("{{{name}}}")),
                None => panic!("!Ref {name}: no such parameter or resource"),
            }
        }

        fn get_att(&self, resource: &str, attr: &str) -> Val {
            match (self.t.resource_type(resource).as_deref(), attr) {
                (Some("AWS::SQS::Queue"), "Arn") => Val::S(format!(
                    "arn:aws:sqs:{REGION}:{ACCOUNT}:{{{resource}.QueueName}}"
                )),
                (Some("AWS::DynamoDB::Table"), "Arn") => Val::S(format!(
                    "arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{{{resource}.TableName}}"
                )),
                (Some(_), _) => Val::S(format!("{{{resource}.{attr}}}")),
                (None, _) => panic!("!GetAtt {resource}.{attr}: no such resource"),
            }
        }

        fn condition(&self, name: &str) -> bool {
            if let Some(b) = self.conditions.borrow().get(name) {
                return *b;
            }
            let def = self
                .t
                .root
                .get("Conditions")
                .and_then(|c| c.get(name))
                .unwrap_or_else(|| panic!("no condition {name}"))
                .clone();
            let b = self.truth(&def);
            self.conditions.borrow_mut().insert(name.to_owned(), b);
            b
        }

        fn truth(&self, v: &Value) -> bool {
            let (f, arg) = intrinsic(v, true).unwrap_or_else(|| panic!("not a condition: {v:?}"));
            let items = || arg.as_sequence().cloned().unwrap_or_default();
            match f.as_str() {
                "Condition" => self.condition(arg.as_str().expect("a condition name")),
                "Fn::Equals" => {
                    let i = items();
                    self.eval(&i[0], &HashMap::new()) == self.eval(&i[1], &HashMap::new())
                }
                "Fn::Not" => !self.truth(&items()[0]),
                "Fn::And" => items().iter().all(|x| self.truth(x)),
                "Fn::Or" => items().iter().any(|x| self.truth(x)),
                "Fn::EachMemberEquals" => {
                    let i = items();
                    let want = self.eval(&i[1], &HashMap::new());
                    self.eval(&i[0], &HashMap::new())
                        .strings()
                        .iter()
                        .all(|m| Some(m.as_str()) == want.s())
                }
                "Fn::Contains" => {
                    let i = items();
                    let want = self.eval(&i[1], &HashMap::new());
                    self.eval(&i[0], &HashMap::new())
                        .strings()
                        .iter()
                        .any(|m| Some(m.as_str()) == want.s())
                }
                other => {
                    panic!("condition function {other} is not understood by tests/permissions.rs")
                }
            }
        }

        fn rules_hold(&self) -> bool {
            let Some(rules) = self.t.root.get("Rules").and_then(Value::as_mapping) else {
                return true;
            };
            rules.values().all(|r| {
                if let Some(c) = r.get("RuleCondition") {
                    if !self.truth(c) {
                        return true;
                    }
                }
                r.get("Assertions")
                    .and_then(Value::as_sequence)
                    .map(|a| a.iter().all(|x| self.truth(&x["Assert"])))
                    .unwrap_or(true)
            })
        }

        fn sub(&self, text: &str, vars: &HashMap<String, Val>) -> Val {
            let mut out = String::new();
            let mut rest = text;
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let end = rest[start..].find('}').expect("closed ${") + start;
                let inner = &rest[start + 2..end];
                if let Some(lit) = inner.strip_prefix('!') {
                    out.push_str("${");
                    out.push_str(lit);
                    out.push('}');
                } else {
                    let v = if let Some(v) = vars.get(inner) {
                        v.clone()
                    } else if let Some((r, a)) = inner
                        .split_once('.')
                        .filter(|_| !inner.starts_with("AWS::"))
                    {
                        self.get_att(r, a)
                    } else {
                        self.reference(inner)
                    };
                    out.push_str(
                        v.s()
                            .unwrap_or_else(|| panic!("${{{inner}}} is not a string")),
                    );
                }
                rest = &rest[end + 1..];
            }
            out.push_str(rest);
            Val::S(out)
        }

        /// Evaluates a value: intrinsic functions resolved, `AWS::NoValue` dropped.
        fn eval(&self, v: &Value, vars: &HashMap<String, Val>) -> Val {
            if let Some((f, arg)) = intrinsic(v, false) {
                let items = || arg.as_sequence().cloned().unwrap_or_default();
                return match f.as_str() {
                    "Ref" => {
                        let name = arg.as_str().expect("!Ref names something");
                        vars.get(name)
                            .cloned()
                            .unwrap_or_else(|| self.reference(name))
                    }
                    "Fn::GetAtt" => match arg {
                        Value::String(s) => {
                            let (r, a) = s.split_once('.').expect("!GetAtt Resource.Attribute");
                            self.get_att(r, a)
                        }
                        _ => {
                            let i = items();
                            self.get_att(
                                i[0].as_str().unwrap_or_default(),
                                i[1].as_str().unwrap_or_default(),
                            )
                        }
                    },
                    "Fn::Sub" => match arg {
                        Value::String(s) => self.sub(s, vars),
                        _ => {
                            let i = items();
                            let mut local = vars.clone();
                            if let Some(m) = i.get(1).and_then(Value::as_mapping) {
                                for (k, x) in m {
                                    local.insert(
                                        k.as_str().unwrap_or_default().to_owned(),
                                        self.eval(x, vars),
                                    );
                                }
                            }
                            self.sub(i[0].as_str().expect("a !Sub string"), &local)
                        }
                    },
                    "Fn::If" => {
                        let i = items();
                        let c = i[0].as_str().expect("!If names a condition");
                        self.eval(if self.condition(c) { &i[1] } else { &i[2] }, vars)
                    }
                    "Fn::Join" => {
                        let i = items();
                        let sep = scalar(&i[0]).unwrap_or_default();
                        Val::S(self.eval(&i[1], vars).strings().join(&sep))
                    }
                    "Fn::Split" => {
                        let i = items();
                        let sep = scalar(&i[0]).unwrap_or_default();
                        let s = self.eval(&i[1], vars).s().unwrap_or_default().to_owned();
                        Val::L(
                            s.split(sep.as_str())
                                .map(|x| Val::S(x.to_owned()))
                                .collect(),
                        )
                    }
                    "Fn::Select" => {
                        let i = items();
                        let k: usize = self
                            .eval(&i[0], vars)
                            .s()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        match self.eval(&i[1], vars) {
                            Val::L(l) => l.get(k).cloned().unwrap_or(Val::S(String::new())),
                            other => other,
                        }
                    }
                    "Fn::GetAZs" => Val::L(vec![
                        Val::S(format!("{REGION}a")),
                        Val::S(format!("{REGION}b")),
                    ]),
                    "Fn::Cidr" => {
                        Val::L((0..8).map(|k| Val::S(format!("10.40.{k}.0/24"))).collect())
                    }
                    "Fn::Base64" => Val::S(format!("base64({:?})", self.eval(arg, vars))),
                    "Fn::Equals" | "Fn::Not" | "Fn::And" | "Fn::Or" => {
                        Val::S(self.truth(v).to_string())
                    }
                    other => panic!("{other} is not understood by tests/permissions.rs"),
                };
            }
            match v {
                Value::Sequence(s) => Val::L(
                    s.iter()
                        .map(|x| self.eval(x, vars))
                        .filter(|x| *x != Val::NoValue)
                        .collect(),
                ),
                Value::Mapping(m) => Val::M(
                    m.iter()
                        .map(|(k, x)| (scalar(k).unwrap_or_default(), self.eval(x, vars)))
                        .filter(|(_, x)| *x != Val::NoValue)
                        .collect(),
                ),
                Value::Null => Val::NoValue,
                Value::Tagged(t) => self.eval(&t.value, vars),
                other => Val::S(scalar(other).unwrap_or_default()),
            }
        }

        fn env(&self, function: &Value) -> BTreeMap<String, String> {
            let mut env = BTreeMap::new();
            let global = self
                .t
                .root
                .get("Globals")
                .and_then(|g| g.get("Function"))
                .and_then(|f| f.get("Environment"))
                .and_then(|e| e.get("Variables"));
            let own = function
                .get("Properties")
                .and_then(|p| p.get("Environment"))
                .and_then(|e| e.get("Variables"));
            for vars in [global, own].into_iter().flatten() {
                if let Val::M(m) = self.eval(vars, &HashMap::new()) {
                    for (k, v) in m {
                        match v {
                            Val::S(s) => {
                                env.insert(k, s);
                            }
                            _ => {
                                env.remove(&k);
                            }
                        }
                    }
                }
            }
            env
        }

        /// The table resource a table name refers to, if the stack creates it.
        fn table_resource(name: &str) -> Option<&str> {
            name.strip_prefix('{')?.strip_suffix(".TableName}")
        }

        /// What a function's policy lacks and has too much of, in this scenario.
        fn function_problems(
            &self,
            name: &str,
            function: &Value,
            calls: &[Call],
            set_somewhere: &mut BTreeSet<(String, String)>,
        ) -> Vec<String> {
            let binary = function["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap_or_default();
            let mut problems = Vec::new();
            let env = self.env(function);
            // What is needed: (action, resource) -> why.
            let mut needed: BTreeMap<(String, String), String> = BTreeMap::new();
            for c in calls.iter().filter(|c| c.sent) {
                let var = c.on.variable();
                let Some(value) = env.get(var) else { continue };
                set_somewhere.insert((binary.to_owned(), var.to_owned()));
                let why = match c.on {
                    On::Index(_, index) => format!("{} on {var} index {index}", c.operation),
                    _ => format!("{} on {var}", c.operation),
                };
                // A transaction needs the action of each kind of item it writes.
                let mut need = |resource: String| {
                    for action in c.iam_actions() {
                        needed
                            .entry((action, resource.clone()))
                            .or_insert_with(|| why.clone());
                    }
                };
                match c.on {
                    On::Queue(_) => match queue_arn(value) {
                        Some(arn) => need(arn),
                        None => problems.push(format!("{var}={value:?} is not a queue URL")),
                    },
                    On::Table(_) => need(table_arn(value)),
                    On::Index(_, index) => {
                        if let Some(table) = Self::table_resource(value) {
                            if !self.table_has_index(table, index) {
                                problems.push(format!(
                                    "the code queries index {index:?} of {table}, which template.yaml does not declare"
                                ));
                            }
                        }
                        need(format!("{}/index/{index}", table_arn(value)));
                    }
                    On::Secret(_) => {
                        let (arn, key) = self.secret(value);
                        need(arn);
                        if let Some(key) = key {
                            needed
                                .entry(("kms:Decrypt".into(), key))
                                .or_insert_with(|| {
                                    format!("{} on {var} (its KMS key)", c.operation)
                                });
                        }
                    }
                    On::Connections(_) => {
                        match connections_arn(value, c.http_method().unwrap_or("*")) {
                            Some(arn) => need(arn),
                            None => problems
                                .push(format!("{var}={value:?} is not a management endpoint")),
                        }
                    }
                }
            }
            // Event sources: a mapping from SQS polls with the function's role.
            for (k, r) in self.t.section("Resources") {
                let mapping = k.as_str().unwrap_or_default();
                if r.get("Type").and_then(Value::as_str) != Some("AWS::Lambda::EventSourceMapping")
                {
                    continue;
                }
                if let Some(c) = r.get("Condition").and_then(Value::as_str) {
                    if !self.condition(c) {
                        continue;
                    }
                }
                let props = self.eval(&r["Properties"], &HashMap::new());
                let target = props
                    .get("FunctionName")
                    .and_then(Val::s)
                    .unwrap_or_default();
                if target != format!("{{{name}}}") && target != format!("{{{name}.Arn}}") {
                    continue;
                }
                let source = props
                    .get("EventSourceArn")
                    .and_then(Val::s)
                    .unwrap_or_default()
                    .to_owned();
                if source.starts_with("arn:aws:sqs:") {
                    for a in [
                        "sqs:ReceiveMessage",
                        "sqs:DeleteMessage",
                        "sqs:GetQueueAttributes",
                    ] {
                        needed
                            .entry((a.into(), source.clone()))
                            .or_insert_with(|| format!("event source mapping {mapping}"));
                    }
                } else {
                    problems.push(format!(
                        "event source mapping {mapping} from {source:?} is not understood"
                    ));
                }
            }
            let props = self.eval(&function["Properties"], &HashMap::new());
            if props.get("Role").is_some() {
                problems.push("has a Role of its own, which this check does not read".into());
            }
            if let Some(Val::M(events)) = props.get("Events") {
                for (event, e) in events {
                    let t = e.get("Type").and_then(Val::s).unwrap_or_default();
                    if !matches!(t, "Schedule" | "ScheduleV2" | "Api" | "HttpApi") {
                        problems.push(format!(
                            "event {event} of type {t} makes SAM attach permissions this check does not see"
                        ));
                    }
                }
            }
            if let Some(c) = props.get("EventInvokeConfig") {
                if c.get("DestinationConfig").is_some() {
                    problems.push("EventInvokeConfig destinations need permissions this check does not derive".into());
                }
            }
            // What is granted.
            let mut granted: BTreeSet<(String, String)> = BTreeSet::new();
            let policies = match props.get("Policies") {
                Some(Val::L(l)) => l.clone(),
                Some(other) => vec![other.clone()],
                None => Vec::new(),
            };
            for p in &policies {
                let statements = match p {
                    Val::S(managed) => {
                        problems.push(format!(
                            "managed policy {managed} grants what this check cannot see"
                        ));
                        continue;
                    }
                    Val::M(m) if m.iter().any(|(k, _)| k == "Statement") => {
                        match p.get("Statement").cloned() {
                            Some(Val::L(l)) => l,
                            Some(one) => vec![one],
                            None => Vec::new(),
                        }
                    }
                    Val::M(m) if m.len() == 1 => match self.policy_template(&m[0].0, &m[0].1) {
                        Some(s) => s,
                        None => {
                            problems
                                .push(format!("SAM policy template {} is not understood", m[0].0));
                            continue;
                        }
                    },
                    other => {
                        problems.push(format!("policy {other:?} is not understood"));
                        continue;
                    }
                };
                for s in &statements {
                    if s.get("Effect").and_then(Val::s) != Some("Allow") {
                        problems.push(format!(
                            "statement {s:?}: only Allow statements are understood"
                        ));
                        continue;
                    }
                    for unsupported in ["NotAction", "NotResource", "Principal"] {
                        if s.get(unsupported).is_some() {
                            problems
                                .push(format!("statement with {unsupported} is not understood"));
                        }
                    }
                    let actions = s.get("Action").map(Val::strings).unwrap_or_default();
                    let resources = s.get("Resource").map(Val::strings).unwrap_or_default();
                    if let Some(cond) = s.get("Condition") {
                        let via = cond
                            .get("StringEquals")
                            .and_then(|x| x.get("kms:ViaService"))
                            .and_then(Val::s);
                        let expected = format!("secretsmanager.{REGION}.amazonaws.com");
                        let only_kms = actions
                            .iter()
                            .all(|a| a.to_ascii_lowercase().starts_with("kms:"));
                        if !(only_kms && via == Some(expected.as_str())) {
                            problems.push(format!(
                                "statement condition {cond:?} is not understood (only kms:ViaService \
                                 {expected} on kms actions is)"
                            ));
                        }
                    }
                    for a in &actions {
                        for r in &resources {
                            granted.insert((a.clone(), r.clone()));
                        }
                    }
                }
            }
            let lower = |(a, r): &(String, String)| (a.to_ascii_lowercase(), r.clone());
            let granted_l: BTreeSet<(String, String)> = granted.iter().map(lower).collect();
            let needed_l: BTreeSet<(String, String)> = needed.keys().map(lower).collect();
            for (k, why) in &needed {
                if !granted_l.contains(&lower(k)) {
                    problems.push(format!("missing {} on {} (for {why})", k.0, k.1));
                }
            }
            for k in &granted {
                if !needed_l.contains(&lower(k)) {
                    problems.push(format!(
                        "stray {} on {} (no call or event source needs it)",
                        k.0, k.1
                    ));
                }
            }
            problems
        }

        fn table_has_index(&self, table: &str, index: &str) -> bool {
            let props = &self.t.root["Resources"][table]["Properties"];
            ["GlobalSecondaryIndexes", "LocalSecondaryIndexes"]
                .iter()
                .any(|k| {
                    props.get(*k).and_then(Value::as_sequence).is_some_and(|l| {
                        l.iter()
                            .any(|i| i.get("IndexName").and_then(Value::as_str) == Some(index))
                    })
                })
        }

        /// The ARN to grant for a secret the environment names, and its customer-managed key.
        fn secret(&self, value: &str) -> (String, Option<String>) {
            let created = value
                .strip_prefix('{')
                .and_then(|v| v.strip_suffix('}'))
                .filter(|r| {
                    self.t.resource_type(r).as_deref() == Some("AWS::SecretsManager::Secret")
                });
            if let Some(resource) = created {
                let key = self.t.root["Resources"][resource]
                    .get("Properties")
                    .and_then(|p| p.get("KmsKeyId"))
                    .map(|k| self.eval(k, &HashMap::new()))
                    .and_then(|k| k.s().map(str::to_owned))
                    .filter(|k| !k.is_empty());
                return (value.to_owned(), key);
            }
            let key = self
                .t
                .root
                .get("Parameters")
                .and_then(|p| p.get(SECRET_KMS_KEY_PARAMETER))
                .map(|_| self.reference(SECRET_KMS_KEY_PARAMETER))
                .and_then(|k| k.s().map(str::to_owned))
                .filter(|k| !k.is_empty());
            let arn = if value.starts_with("arn:") {
                value.to_owned()
            } else {
                // A name: Secrets Manager appends six random characters to it in the ARN.
                format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{value}-??????")
            };
            (arn, key)
        }

        /// The statements of a SAM policy template (the few this check knows).
        fn policy_template(&self, name: &str, args: &Val) -> Option<Vec<Val>> {
            let arg = |k: &str| args.get(k).and_then(Val::s).unwrap_or_default().to_owned();
            let stmt = |actions: &[&str], resources: Vec<String>| {
                Val::M(vec![
                    ("Effect".into(), Val::S("Allow".into())),
                    (
                        "Action".into(),
                        Val::L(actions.iter().map(|a| Val::S((*a).into())).collect()),
                    ),
                    (
                        "Resource".into(),
                        Val::L(resources.into_iter().map(Val::S).collect()),
                    ),
                ])
            };
            let queue = |q: String| format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{q}");
            let table = |t: String| vec![table_arn(&t), format!("{}/index/*", table_arn(&t))];
            Some(vec![match name {
                "SQSSendMessagePolicy" => {
                    stmt(&["sqs:SendMessage*"], vec![queue(arg("QueueName"))])
                }
                "SQSPollerPolicy" => stmt(
                    &[
                        "sqs:ChangeMessageVisibility",
                        "sqs:ChangeMessageVisibilityBatch",
                        "sqs:DeleteMessage",
                        "sqs:DeleteMessageBatch",
                        "sqs:GetQueueAttributes",
                        "sqs:ReceiveMessage",
                    ],
                    vec![queue(arg("QueueName"))],
                ),
                "DynamoDBReadPolicy" => stmt(
                    &[
                        "dynamodb:GetItem",
                        "dynamodb:Scan",
                        "dynamodb:Query",
                        "dynamodb:BatchGetItem",
                        "dynamodb:DescribeTable",
                    ],
                    table(arg("TableName")),
                ),
                "DynamoDBWritePolicy" => stmt(
                    &[
                        "dynamodb:PutItem",
                        "dynamodb:UpdateItem",
                        "dynamodb:BatchWriteItem",
                    ],
                    table(arg("TableName")),
                ),
                "DynamoDBCrudPolicy" => stmt(
                    &[
                        "dynamodb:GetItem",
                        "dynamodb:DeleteItem",
                        "dynamodb:PutItem",
                        "dynamodb:Scan",
                        "dynamodb:Query",
                        "dynamodb:UpdateItem",
                        "dynamodb:BatchWriteItem",
                        "dynamodb:BatchGetItem",
                        "dynamodb:DescribeTable",
                        "dynamodb:ConditionCheckItem",
                    ],
                    table(arg("TableName")),
                ),
                "AWSSecretsManagerGetSecretValuePolicy" => {
                    stmt(&["secretsmanager:GetSecretValue"], vec![arg("SecretArn")])
                }
                "KMSDecryptPolicy" => stmt(
                    &["kms:Decrypt"],
                    vec![format!(
                        "arn:aws:kms:{REGION}:{ACCOUNT}:key/{}",
                        arg("KeyId")
                    )],
                ),
                _ => return None,
            }])
        }
    }

    /// `https://sqs.{region}.amazonaws.com/{account}/{name}` -> its ARN.
    fn queue_arn(url: &str) -> Option<String> {
        let rest = url.strip_prefix("https://")?;
        let (host, path) = rest.split_once('/')?;
        let region = host.strip_prefix("sqs.")?.split('.').next()?;
        let (account, name) = path.split_once('/')?;
        Some(format!("arn:aws:sqs:{region}:{account}:{name}"))
    }

    fn table_arn(name: &str) -> String {
        if name.starts_with("arn:") {
            name.to_owned()
        } else {
            format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}")
        }
    }

    /// `https://{api}.execute-api.{region}.amazonaws.com/{stage}` -> the `@connections` ARN
    /// for one HTTP method.
    fn connections_arn(endpoint: &str, method: &str) -> Option<String> {
        let rest = endpoint.strip_prefix("https://")?;
        let (host, stage) = rest.split_once('/')?;
        let (api, after) = host.split_once(".execute-api.")?;
        let region = after.split('.').next()?;
        Some(format!(
            "arn:aws:execute-api:{region}:{ACCOUNT}:{api}/{}/{method}/@connections/*",
            stage.trim_end_matches('/')
        ))
    }
}

/// The identifiers of a path, in order (`a::b::C` → `["a", "b", "C"]`).
fn idents(path: &syn::Path) -> Vec<String> {
    path.segments.iter().map(|s| s.ident.to_string()).collect()
}

/// The last identifier of a path, or "" for an empty one.
fn last_ident(path: &syn::Path) -> String {
    path.segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default()
}

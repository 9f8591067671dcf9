use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::cluster::{Cluster, ClusterLink};
use super::mcp::McpServers;
use super::openai::Outbound;
use super::params::Params;
use super::{
    Generator, Judge, Metric, Parser, Reducer, builtin_generators, builtin_judges, builtin_metrics,
    builtin_parsers, builtin_reducers, openai,
};
use crate::model::FieldError;
use crate::sandbox::Sandboxes;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentKind {
    Generator,
    Reducer,
    Parser,
    Metric,
    Judge,
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ComponentKind::Generator => "generator",
            ComponentKind::Reducer => "reducer",
            ComponentKind::Parser => "parser",
            ComponentKind::Metric => "metric",
            ComponentKind::Judge => "judge",
        })
    }
}

/// Why a component reference could not be turned into a component.
#[derive(Debug, Clone, PartialEq)]
pub enum ResolveError {
    Unknown {
        kind: ComponentKind,
        known: Vec<String>,
    },
    Params(Vec<FieldError>),
}

/// A resolved component with the version that feeds the run id.
pub struct Resolved<T: ?Sized> {
    pub component: Arc<T>,
    pub version: &'static str,
}

/// Builds a component from its params; composite components (panels, selectors) also
/// resolve the components named in their params through the registry.
type Factory<T> = Arc<dyn Fn(&Registry, &mut Params<'_>) -> Arc<T> + Send + Sync>;

struct Entry<T: ?Sized> {
    version: &'static str,
    factory: Factory<T>,
}

struct Table<T: ?Sized> {
    kind: ComponentKind,
    entries: BTreeMap<String, Entry<T>>,
}

impl<T: ?Sized> Table<T> {
    fn new(kind: ComponentKind) -> Self {
        Table {
            kind,
            entries: BTreeMap::new(),
        }
    }

    fn resolve(
        &self,
        registry: &Registry,
        name: &str,
        params: &Map<String, Value>,
    ) -> Result<Resolved<T>, ResolveError> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| ResolveError::Unknown {
                kind: self.kind,
                known: self.entries.keys().cloned().collect(),
            })?;
        let mut reader = Params::new(params);
        let component = (entry.factory)(registry, &mut reader);
        let component = reader.finish(component).map_err(ResolveError::Params)?;
        Ok(Resolved {
            component,
            version: entry.version,
        })
    }
}

/// Every component the service knows, by kind and name.
///
/// A factory reads its params through [`Params`] (which records problems and unknown
/// keys) and always returns a component; the component is discarded when any param was
/// wrong, so factories never need an error path of their own.
pub struct Registry {
    generators: Table<dyn Generator>,
    reducers: Table<dyn Reducer>,
    parsers: Table<dyn Parser>,
    metrics: Table<dyn Metric>,
    judges: Table<dyn Judge>,
    /// The operator's MCP servers, for components that offer their tools.
    mcp_servers: Arc<McpServers>,
    /// The instances declared providers' limits are shared with, once known.
    cluster: ClusterLink,
}

macro_rules! kind_methods {
    ($register:ident, $composite:ident, $resolve:ident, $field:ident, $trait:ident) => {
        pub fn $register(
            &mut self,
            name: &str,
            version: &'static str,
            factory: impl Fn(&mut Params<'_>) -> Arc<dyn $trait> + Send + Sync + 'static,
        ) {
            self.$composite(name, version, move |_, p| factory(p));
        }

        /// Registers a component whose factory resolves other components by name.
        pub fn $composite(
            &mut self,
            name: &str,
            version: &'static str,
            factory: impl Fn(&Registry, &mut Params<'_>) -> Arc<dyn $trait> + Send + Sync + 'static,
        ) {
            self.$field.entries.insert(
                name.to_owned(),
                Entry {
                    version,
                    factory: Arc::new(factory),
                },
            );
        }

        pub fn $resolve(
            &self,
            name: &str,
            params: &Map<String, Value>,
        ) -> Result<Resolved<dyn $trait>, ResolveError> {
            self.$field.resolve(self, name, params)
        }
    };
}

impl Registry {
    /// An empty registry (tests and embedders add their own components).
    pub fn empty() -> Self {
        Registry {
            generators: Table::new(ComponentKind::Generator),
            reducers: Table::new(ComponentKind::Reducer),
            parsers: Table::new(ComponentKind::Parser),
            metrics: Table::new(ComponentKind::Metric),
            judges: Table::new(ComponentKind::Judge),
            mcp_servers: Arc::new(McpServers::none()),
            cluster: ClusterLink::default(),
        }
    }

    /// Shares declared providers' limits (`max_concurrency`, `requests_per_minute`,
    /// `tokens_per_minute`) with the other instances on `cluster`'s store, from now on;
    /// a second call changes nothing.
    pub fn join_cluster(&self, cluster: Cluster) {
        let _ = self.cluster.set(cluster);
    }

    pub(crate) fn cluster_link(&self) -> ClusterLink {
        self.cluster.clone()
    }

    /// All `builtin/...` components and the `openai/...` providers, with the
    /// zero-configuration outbound setup of local development ([`Outbound::local`]:
    /// implicit providers, loopback and private destinations allowed).
    pub fn builtin() -> Self {
        Self::builtin_with(Outbound::local())
    }

    /// [`Registry::builtin`] with the operator's providers, egress policy and outbound
    /// cap: the only keys provider components can send, and where.
    pub fn builtin_with(outbound: Outbound) -> Self {
        let mut registry = Self::empty();
        builtin_generators::register(&mut registry);
        builtin_reducers::register(&mut registry);
        builtin_parsers::register(&mut registry);
        builtin_metrics::register(&mut registry);
        builtin_judges::register(&mut registry);
        super::judges_panel::register(&mut registry);
        super::selectors::register(&mut registry);
        super::metrics_text::register(&mut registry);
        super::metrics_choice_math::register(&mut registry);
        super::metrics_json_schema::register(&mut registry);
        super::metrics_trajectory::register(&mut registry);
        super::parsers_extract::register(&mut registry);
        super::openai_evals::register(&mut registry);
        openai::register(&mut registry, outbound);
        // Known without a sandbox, so naming them is a clear error rather than unknown.
        super::metrics_code::register(&mut registry, Arc::new(Sandboxes::none()));
        registry
    }

    /// The code metrics (`builtin/code_execution`, `builtin/python_grader`) running in
    /// the operator's sandboxes.
    pub fn with_sandboxes(mut self, sandboxes: Arc<Sandboxes>) -> Self {
        super::metrics_code::register(&mut self, sandboxes);
        self
    }

    /// The operator's MCP servers ([`McpServers`]); none unless given.
    pub fn with_mcp_servers(mut self, servers: Arc<McpServers>) -> Self {
        self.mcp_servers = servers;
        self
    }

    /// The MCP servers components may call (factories read them through the `&Registry`
    /// of [`Registry::register_composite_generator`] and its kin).
    pub fn mcp_servers(&self) -> &Arc<McpServers> {
        &self.mcp_servers
    }

    kind_methods!(
        register_generator,
        register_composite_generator,
        generator,
        generators,
        Generator
    );
    kind_methods!(
        register_reducer,
        register_composite_reducer,
        reducer,
        reducers,
        Reducer
    );
    kind_methods!(
        register_parser,
        register_composite_parser,
        parser,
        parsers,
        Parser
    );
    kind_methods!(
        register_metric,
        register_composite_metric,
        metric,
        metrics,
        Metric
    );
    kind_methods!(
        register_judge,
        register_composite_judge,
        judge,
        judges,
        Judge
    );

    /// Names of every registered component of a kind, sorted.
    pub fn names(&self, kind: ComponentKind) -> Vec<String> {
        fn keys<T: ?Sized>(table: &Table<T>) -> Vec<String> {
            table.entries.keys().cloned().collect()
        }
        match kind {
            ComponentKind::Generator => keys(&self.generators),
            ComponentKind::Reducer => keys(&self.reducers),
            ComponentKind::Parser => keys(&self.parsers),
            ComponentKind::Metric => keys(&self.metrics),
            ComponentKind::Judge => keys(&self.judges),
        }
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

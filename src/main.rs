use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use joyfull_hub::config::Config;

/// Every request allocates and frees many small buffers (JSON, GraphQL documents, SQL parameters);
/// mimalloc does that with less CPU than glibc's allocator, which fragments under this pattern.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Joyfull Hub: the GraphQL backend of a multi-tool AI dashboard.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// A KEY=VALUE file read before the environment (the environment wins). Also HUB_CONFIG_FILE.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL), as schema.graphql holds it.
    ExportSchema,
    /// Fill the database with synthetic users, tools and usage rows (for performance measurements).
    GenerateUsage {
        #[arg(long, default_value_t = 1000)]
        users: i32,
        #[arg(long, default_value_t = 1_000_000)]
        rows: i64,
        #[arg(long, default_value_t = 20)]
        tools: i32,
        /// Spread the rows over this many past days.
        #[arg(long, default_value_t = 365)]
        days: i32,
    },
    /// Create an administrator account (never changes an existing one).
    CreateAdmin {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: String,
        #[arg(long, default_value = "Administrator")]
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::ExportSchema = command {
        print!("{}", joyfull_hub::graphql::export_sdl());
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("joyfull-hub: {e}");
            return ExitCode::from(2);
        }
    };
    let _telemetry =
        joyfull_hub::telemetry::init(config.log_format, config.otlp_endpoint.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("joyfull-hub: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Migrate => joyfull_hub::migrate(config).await,
            Command::GenerateUsage {
                users,
                rows,
                tools,
                days,
            } => {
                let plan = joyfull_hub::dev::generate::Plan {
                    users,
                    rows,
                    tools,
                    days,
                };
                joyfull_hub::generate_usage(config, plan).await
            }
            Command::CreateAdmin {
                email,
                password,
                name,
            } => joyfull_hub::create_admin(config, &email, &password, &name).await,
            Command::Serve | Command::ExportSchema => joyfull_hub::serve(config).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("joyfull-hub: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// Atlas project file: `atlas schema apply --env local` applies schema/*.pg.hcl
// to DATABASE_URL. The same files are applied by `chatctl schema apply`
// (the Atlas Go library) on machines without the Atlas CLI.

// The default: a Docker engine provides the dev database Atlas normalises in.
env "local" {
  src = "file://schema"
  url = getenv("DATABASE_URL")
  dev = "docker://postgres/15/dev"
  schemas = ["public"]
}

// Machines without Docker: ATLAS_DEV_URL names an empty scratch database on
// a Postgres server, e.g.
//   createdb atlas_dev
//   ATLAS_DEV_URL=postgres://postgres@127.0.0.1:5432/atlas_dev?sslmode=disable \
//     atlas schema apply --env nodocker
env "nodocker" {
  src = "file://schema"
  url = getenv("DATABASE_URL")
  dev = getenv("ATLAS_DEV_URL")
  schemas = ["public"]
}

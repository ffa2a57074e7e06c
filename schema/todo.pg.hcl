# The todo assistant's tasks. Every row belongs to one Better Auth user and
# goes with that user.

table "tasks" {
  schema = schema.public
  column "id" {
    type = bigint
    identity {
      generated = ALWAYS
    }
  }
  column "user_id" {
    type = text
  }
  column "title" {
    type = text
  }
  column "description" {
    type = text
    null = true
  }
  column "completed" {
    type    = boolean
    default = false
  }
  column "created_at" {
    type    = timestamptz
    default = sql("now()")
  }
  column "updated_at" {
    type    = timestamptz
    default = sql("now()")
  }
  primary_key {
    columns = [column.id]
  }
  foreign_key "tasks_user_id_fkey" {
    columns     = [column.user_id]
    ref_columns = [table.user.column.id]
    on_update   = NO_ACTION
    on_delete   = CASCADE
  }
  # The API counts code points of trimmed text; char_length counts code points.
  check "tasks_title_length" {
    expr = "char_length(title) BETWEEN 1 AND 200"
  }
  check "tasks_description_length" {
    expr = "description IS NULL OR char_length(description) <= 1000"
  }
  # Listing sorts by created, updated or title within one user, with id as the
  # tie-breaker of the cursor; status filters use the completed prefix. Titles
  # sort case-insensitively: the title index holds lower(title), the exact
  # expression of pkg/todo's ORDER BY and cursor.
  index "tasks_user_created_idx" {
    columns = [column.user_id, column.created_at, column.id]
  }
  index "tasks_user_updated_idx" {
    columns = [column.user_id, column.updated_at, column.id]
  }
  index "tasks_user_title_idx" {
    on {
      column = column.user_id
    }
    on {
      expr = "lower(title)"
    }
    on {
      column = column.id
    }
  }
  index "tasks_user_completed_created_idx" {
    columns = [column.user_id, column.completed, column.created_at, column.id]
  }
}

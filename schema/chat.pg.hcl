# The chat pipeline: conversations, their messages, the runs that answer each
# user message, and the ledger of tool rounds a run records. Every row belongs
# to one Better Auth user and goes with that user; pkg/chat scopes every query
# by user_id. Ids are UUIDs made by pkg/chat, so a run's ids are known before
# its rows are written.

table "conversations" {
  schema = schema.public
  column "id" {
    type = uuid
  }
  column "user_id" {
    type = text
  }
  column "title" {
    type = text
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
  foreign_key "conversations_user_id_fkey" {
    columns     = [column.user_id]
    ref_columns = [table.user.column.id]
    on_update   = NO_ACTION
    on_delete   = CASCADE
  }
  check "conversations_title_length" {
    expr = "char_length(title) BETWEEN 1 AND 200"
  }
  # The list: most recently updated first, id breaking ties (the cursor).
  index "conversations_user_updated_idx" {
    columns = [column.user_id, column.updated_at, column.id]
  }
  # ChatKit's thread list: in creation order, either way, after a given id.
  index "conversations_user_created_idx" {
    columns = [column.user_id, column.created_at, column.id]
  }
}

table "messages" {
  schema = schema.public
  column "id" {
    type = uuid
  }
  # The order of messages within a conversation, and the cursor of its pages.
  column "seq" {
    type = bigint
    identity {
      generated = ALWAYS
    }
  }
  column "conversation_id" {
    type = uuid
  }
  column "user_id" {
    type = text
  }
  # The run a user message starts, or the run an assistant message ends. No
  # foreign key: runs and messages name each other, and both go with their
  # conversation.
  column "run_id" {
    type = uuid
  }
  column "role" {
    type = text
  }
  column "content" {
    type = text
  }
  column "tool_calls" {
    type    = jsonb
    default = sql("'[]'::jsonb")
  }
  column "model" {
    type = text
    null = true
  }
  # The user's feedback on an assistant message (ChatKit's items.feedback):
  # positive, negative, or none.
  column "feedback" {
    type = text
    null = true
  }
  column "created_at" {
    type    = timestamptz
    default = sql("now()")
  }
  primary_key {
    columns = [column.id]
  }
  foreign_key "messages_conversation_id_fkey" {
    columns     = [column.conversation_id]
    ref_columns = [table.conversations.column.id]
    on_update   = NO_ACTION
    on_delete   = CASCADE
  }
  foreign_key "messages_user_id_fkey" {
    columns     = [column.user_id]
    ref_columns = [table.user.column.id]
    on_update   = NO_ACTION
    on_delete   = CASCADE
  }
  check "messages_role" {
    expr = "role IN ('user', 'assistant')"
  }
  # pkg/chat checks a user's message the same way; assistant text is bounded
  # by the model and the worker.
  check "messages_user_content_length" {
    expr = "role <> 'user' OR char_length(content) BETWEEN 1 AND 4000"
  }
  check "messages_feedback" {
    expr = "feedback IS NULL OR feedback IN ('positive', 'negative')"
  }
  check "messages_tool_calls_array" {
    expr = "jsonb_typeof(tool_calls) = 'array'"
  }
  # Pages of a conversation, the newest message of each listed conversation,
  # and the delete cascade from conversations.
  index "messages_conversation_seq_idx" {
    columns = [column.conversation_id, column.seq]
  }
  # Exactly one assistant message per run, whatever retries do.
  index "messages_run_assistant_key" {
    unique  = true
    columns = [column.run_id]
    where   = "role = 'assistant'"
  }
  # A run's messages (History joins the conversation's recent runs to them).
  index "messages_run_id_idx" {
    columns = [column.run_id]
  }
}

table "runs" {
  schema = schema.public
  column "id" {
    type = uuid
  }
  # Acceptance order: a conversation's runs are answered in seq order.
  column "seq" {
    type = bigint
    identity {
      generated = ALWAYS
    }
  }
  column "user_id" {
    type = text
  }
  column "conversation_id" {
    type = uuid
  }
  # The user message the run answers.
  column "message_id" {
    type = uuid
  }
  # The id the run's assistant message gets, fixed when the run is accepted.
  column "assistant_message_id" {
    type = uuid
  }
  column "status" {
    type = text
  }
  column "attempts" {
    type    = integer
    default = 0
  }
  column "error_code" {
    type = text
    null = true
  }
  column "error_message" {
    type = text
    null = true
  }
  # The client's Idempotency-Key and a hash of its request; cleared when the
  # key is reused after its 24 hours.
  column "idempotency_key" {
    type = text
    null = true
  }
  column "request_hash" {
    type = text
    null = true
  }
  # The worker holding a running run, until lease_expires_at.
  column "lease_owner" {
    type = text
    null = true
  }
  column "lease_expires_at" {
    type = timestamptz
    null = true
  }
  column "cancel_requested" {
    type    = boolean
    default = false
  }
  column "created_at" {
    type    = timestamptz
    default = sql("now()")
  }
  column "started_at" {
    type = timestamptz
    null = true
  }
  column "finished_at" {
    type = timestamptz
    null = true
  }
  column "updated_at" {
    type    = timestamptz
    default = sql("now()")
  }
  # Tokens of the model calls of the attempt that finished the run; null
  # when the model's server did not report them.
  column "prompt_tokens" {
    type = integer
    null = true
  }
  column "completion_tokens" {
    type = integer
    null = true
  }
  primary_key {
    columns = [column.id]
  }
  foreign_key "runs_conversation_id_fkey" {
    columns     = [column.conversation_id]
    ref_columns = [table.conversations.column.id]
    on_update   = NO_ACTION
    on_delete   = CASCADE
  }
  foreign_key "runs_user_id_fkey" {
    columns     = [column.user_id]
    ref_columns = [table.user.column.id]
    on_update   = NO_ACTION
    on_delete   = CASCADE
  }
  check "runs_status" {
    expr = "status IN ('queued', 'running', 'completed', 'failed', 'cancelled')"
  }
  check "runs_attempts" {
    expr = "attempts >= 0"
  }
  check "runs_tokens" {
    expr = "(prompt_tokens IS NULL) = (completion_tokens IS NULL) AND coalesce(prompt_tokens, 0) >= 0 AND coalesce(completion_tokens, 0) >= 0"
  }
  # A run is finished exactly when it has a final status.
  check "runs_finished_at" {
    expr = "(finished_at IS NULL) = (status IN ('queued', 'running'))"
  }
  # Only a running run has a lease.
  check "runs_lease" {
    expr = "status = 'running' OR (lease_owner IS NULL AND lease_expires_at IS NULL)"
  }
  check "runs_idempotency_key_length" {
    expr = "idempotency_key IS NULL OR char_length(idempotency_key) BETWEEN 1 AND 255"
  }
  # Idempotency-Key is unique per user while it is kept.
  index "runs_user_idempotency_key" {
    unique  = true
    columns = [column.user_id, column.idempotency_key]
    where   = "idempotency_key IS NOT NULL"
  }
  # Claims: the conversation's unfinished runs in acceptance order.
  index "runs_conversation_unfinished_idx" {
    columns = [column.conversation_id, column.seq]
    where   = "status IN ('queued', 'running')"
  }
  # History (a conversation's latest runs up to one) and the delete cascade
  # from conversations.
  index "runs_conversation_seq_idx" {
    columns = [column.conversation_id, column.seq]
  }
  # The per-user cap on unfinished runs.
  index "runs_user_unfinished_idx" {
    columns = [column.user_id]
    where   = "status IN ('queued', 'running')"
  }
  # The relay: running runs whose lease expired, queued runs left unclaimed.
  index "runs_running_lease_idx" {
    columns = [column.status, column.lease_expires_at]
    where   = "status = 'running'"
  }
  index "runs_queued_created_idx" {
    columns = [column.status, column.created_at]
    where   = "status = 'queued'"
  }
  # chatctl's list of failed runs (few among many completed ones).
  index "runs_failed_created_idx" {
    columns = [column.status, column.created_at]
    where   = "status = 'failed'"
  }
}

# The ledger: each tool call of each round of a run with its result, written
# in the same transaction as the tool's effect, keyed by position because the
# model's call ids change between attempts. text is the model's text of that
# round, repeated on each of its calls.
table "tool_rounds" {
  schema = schema.public
  column "run_id" {
    type = uuid
  }
  column "round" {
    type = integer
  }
  column "idx" {
    type = integer
  }
  column "user_id" {
    type = text
  }
  column "text" {
    type    = text
    default = ""
  }
  column "call_id" {
    type = text
  }
  column "name" {
    type = text
  }
  column "arguments" {
    type = jsonb
  }
  column "result" {
    type = jsonb
  }
  column "created_at" {
    type    = timestamptz
    default = sql("now()")
  }
  primary_key {
    columns = [column.run_id, column.round, column.idx]
  }
  foreign_key "tool_rounds_run_id_fkey" {
    columns     = [column.run_id]
    ref_columns = [table.runs.column.id]
    on_update   = NO_ACTION
    on_delete   = CASCADE
  }
  foreign_key "tool_rounds_user_id_fkey" {
    columns     = [column.user_id]
    ref_columns = [table.user.column.id]
    on_update   = NO_ACTION
    on_delete   = CASCADE
  }
  check "tool_rounds_position" {
    expr = "round >= 0 AND idx >= 0"
  }
}

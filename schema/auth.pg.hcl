# Better Auth's tables (better-auth 1.4 to 1.7, with the JWT plugin's jwks).
# Better Auth reads and writes these; their names are camelCase and must stay
# exactly as Better Auth expects. taskchat reads "user" and session to
# authenticate requests.

schema "public" {}

table "user" {
  schema = schema.public
  column "id" {
    type = text
  }
  column "name" {
    type = text
  }
  column "email" {
    type = text
  }
  column "emailVerified" {
    type    = boolean
    default = false
  }
  column "image" {
    type = text
    null = true
  }
  column "createdAt" {
    type    = timestamptz
    default = sql("now()")
  }
  column "updatedAt" {
    type    = timestamptz
    default = sql("now()")
  }
  primary_key {
    columns = [column.id]
  }
  index "user_email_key" {
    unique  = true
    columns = [column.email]
  }
}

table "session" {
  schema = schema.public
  column "id" {
    type = text
  }
  column "expiresAt" {
    type = timestamptz
  }
  column "token" {
    type = text
  }
  column "createdAt" {
    type    = timestamptz
    default = sql("now()")
  }
  column "updatedAt" {
    type = timestamptz
  }
  column "ipAddress" {
    type = text
    null = true
  }
  column "userAgent" {
    type = text
    null = true
  }
  column "userId" {
    type = text
  }
  primary_key {
    columns = [column.id]
  }
  foreign_key "session_userId_fkey" {
    columns     = [column.userId]
    ref_columns = [table.user.column.id]
    on_update   = NO_ACTION
    on_delete   = CASCADE
  }
  index "session_token_key" {
    unique  = true
    columns = [column.token]
  }
  index "session_userId_idx" {
    columns = [column.userId]
  }
}

table "account" {
  schema = schema.public
  column "id" {
    type = text
  }
  column "accountId" {
    type = text
  }
  column "providerId" {
    type = text
  }
  column "userId" {
    type = text
  }
  column "accessToken" {
    type = text
    null = true
  }
  column "refreshToken" {
    type = text
    null = true
  }
  column "idToken" {
    type = text
    null = true
  }
  column "accessTokenExpiresAt" {
    type = timestamptz
    null = true
  }
  column "refreshTokenExpiresAt" {
    type = timestamptz
    null = true
  }
  column "scope" {
    type = text
    null = true
  }
  column "password" {
    type = text
    null = true
  }
  # Added by better-auth 1.7; nullable so that 1.4 keeps working.
  column "issuer" {
    type = text
    null = true
  }
  column "createdAt" {
    type    = timestamptz
    default = sql("now()")
  }
  column "updatedAt" {
    type = timestamptz
  }
  primary_key {
    columns = [column.id]
  }
  foreign_key "account_userId_fkey" {
    columns     = [column.userId]
    ref_columns = [table.user.column.id]
    on_update   = NO_ACTION
    on_delete   = CASCADE
  }
  index "account_userId_idx" {
    columns = [column.userId]
  }
}

table "verification" {
  schema = schema.public
  column "id" {
    type = text
  }
  column "identifier" {
    type = text
  }
  column "value" {
    type = text
  }
  column "expiresAt" {
    type = timestamptz
  }
  column "createdAt" {
    type    = timestamptz
    default = sql("now()")
  }
  column "updatedAt" {
    type    = timestamptz
    default = sql("now()")
  }
  primary_key {
    columns = [column.id]
  }
  index "verification_identifier_idx" {
    columns = [column.identifier]
  }
}

# The JWT plugin's signing keys; id is the kid of the tokens it signs.
table "jwks" {
  schema = schema.public
  column "id" {
    type = text
  }
  column "publicKey" {
    type = text
  }
  column "privateKey" {
    type = text
  }
  column "createdAt" {
    type = timestamptz
  }
  column "expiresAt" {
    type = timestamptz
    null = true
  }
  column "alg" {
    type = text
    null = true
  }
  column "crv" {
    type = text
    null = true
  }
  primary_key {
    columns = [column.id]
  }
}

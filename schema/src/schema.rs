//! Diesel table definitions, written to match `migrations/{sqlite,postgres}`. Times are Unix
//! milliseconds (UTC) in `BigInt` columns, so that the same models work on both backends.

diesel::table! {
    users (id) {
        id -> BigInt,
        email -> Nullable<Text>,
        email_verified -> Bool,
        display_name -> Text,
        password_hash -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    auth_identities (id) {
        id -> BigInt,
        user_id -> BigInt,
        provider -> Text,
        subject -> Text,
        email -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    auth_sessions (id) {
        id -> BigInt,
        user_id -> BigInt,
        token_hash -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> BigInt,
        user_id -> BigInt,
        name -> Text,
        token_hash -> Text,
        scopes -> Text,
        created_at -> BigInt,
        last_used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    login_flows (state) {
        state -> Text,
        provider -> Text,
        pkce_verifier -> Text,
        nonce -> Text,
        return_to -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    classes (id) {
        id -> BigInt,
        owner_id -> BigInt,
        title -> Text,
        description -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        visibility -> Text,
    }
}

diesel::table! {
    class_sessions (id) {
        id -> BigInt,
        class_id -> BigInt,
        scheduled_start -> BigInt,
        scheduled_end -> Nullable<BigInt>,
        started_at -> Nullable<BigInt>,
        ended_at -> Nullable<BigInt>,
        state -> Text,
        created_at -> BigInt,
        locked -> Bool,
    }
}

diesel::table! {
    class_roles (id) {
        id -> BigInt,
        class_id -> BigInt,
        user_id -> BigInt,
        role -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    class_members (id) {
        id -> BigInt,
        class_id -> BigInt,
        user_id -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    participants (id) {
        id -> BigInt,
        session_id -> BigInt,
        user_id -> BigInt,
        role -> Text,
        joined_at -> BigInt,
        left_at -> Nullable<BigInt>,
        talk_ms -> BigInt,
    }
}

diesel::table! {
    session_removals (id) {
        id -> BigInt,
        session_id -> BigInt,
        user_id -> BigInt,
        removed_by -> BigInt,
        removed_at -> BigInt,
    }
}

diesel::table! {
    recordings (id) {
        id -> BigInt,
        session_id -> BigInt,
        state -> Text,
        object_key -> Nullable<Text>,
        duration_ms -> Nullable<BigInt>,
        size_bytes -> Nullable<BigInt>,
        error -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    chat_messages (id) {
        id -> BigInt,
        session_id -> BigInt,
        user_id -> BigInt,
        body -> Text,
        created_at -> BigInt,
        deleted_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    questions (id) {
        id -> BigInt,
        session_id -> BigInt,
        user_id -> BigInt,
        body -> Text,
        state -> Text,
        created_at -> BigInt,
        answered_at -> Nullable<BigInt>,
        anonymous -> Bool,
        answer -> Nullable<Text>,
    }
}

diesel::table! {
    question_votes (question_id, user_id) {
        question_id -> BigInt,
        user_id -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    hand_raises (id) {
        id -> BigInt,
        session_id -> BigInt,
        user_id -> BigInt,
        state -> Text,
        raised_at -> BigInt,
        resolved_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    polls (id) {
        id -> BigInt,
        session_id -> BigInt,
        created_by -> BigInt,
        question -> Text,
        options -> Text,
        state -> Text,
        created_at -> BigInt,
        closed_at -> Nullable<BigInt>,
        multiple_choice -> Bool,
        results_shared -> Bool,
    }
}

diesel::table! {
    poll_ballots (poll_id, user_id) {
        poll_id -> BigInt,
        user_id -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    poll_votes (poll_id, user_id, option_index) {
        poll_id -> BigInt,
        user_id -> BigInt,
        option_index -> Integer,
    }
}

diesel::joinable!(auth_identities -> users (user_id));
diesel::joinable!(auth_sessions -> users (user_id));
diesel::joinable!(api_tokens -> users (user_id));
diesel::joinable!(classes -> users (owner_id));
diesel::joinable!(class_sessions -> classes (class_id));
diesel::joinable!(class_roles -> classes (class_id));
diesel::joinable!(class_roles -> users (user_id));
diesel::joinable!(class_members -> classes (class_id));
diesel::joinable!(class_members -> users (user_id));
diesel::joinable!(participants -> class_sessions (session_id));
diesel::joinable!(participants -> users (user_id));
diesel::joinable!(recordings -> class_sessions (session_id));
diesel::joinable!(session_removals -> class_sessions (session_id));
diesel::joinable!(chat_messages -> class_sessions (session_id));
diesel::joinable!(chat_messages -> users (user_id));
diesel::joinable!(questions -> class_sessions (session_id));
diesel::joinable!(questions -> users (user_id));
diesel::joinable!(question_votes -> questions (question_id));
diesel::joinable!(hand_raises -> class_sessions (session_id));
diesel::joinable!(polls -> class_sessions (session_id));
diesel::joinable!(poll_ballots -> polls (poll_id));
diesel::joinable!(poll_votes -> polls (poll_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    auth_identities,
    auth_sessions,
    api_tokens,
    login_flows,
    classes,
    class_sessions,
    class_roles,
    class_members,
    participants,
    session_removals,
    recordings,
    chat_messages,
    questions,
    question_votes,
    hand_raises,
    polls,
    poll_ballots,
    poll_votes,
);

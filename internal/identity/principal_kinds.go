package identity

// KindAnonymous is the caller of an anonymous pull (only when the operator enables
// anonymous pulls). It has no object id and no credentials.
const KindAnonymous Kind = "anonymous"

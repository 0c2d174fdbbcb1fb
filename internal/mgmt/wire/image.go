package wire

// AudienceRegistry is the registry's "service" in the Docker token flow (the audience of
// registry tokens). `coffer login` asks for a refresh token of this audience too, so that
// `coffer image …` reaches the registry without a password: a refresh token is bound to
// the audience it was issued for.
const AudienceRegistry = "coffer-registry"

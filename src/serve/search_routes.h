// The corpus-search API (src/index/http_api.h) mounted on a serve::Server:
// `tsumugi serve --index` calls this, and so do the tests, so both serve the
// same routes.
#pragma once

#include "index/suffix_index.h"
#include "serve/server.h"

namespace tsumugi::serve {

// GET and POST /v1/search/<endpoint> (API key checked like the other API
// endpoints; a POST's JSON object body adds to the query-string parameters) and
// the search page at /search. `index` must outlive the server.
void add_search(Server &server, const index::Index &index);

} // namespace tsumugi::serve

#include "serve/search_routes.h"

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "index/http_api.h"

namespace tsumugi::serve {

void add_search(Server &server, const index::Index &idx) {
  auto handler = [&idx](const httplib::Request &req, httplib::Response &res) {
    index::Params p;
    for (const auto &[k, v] : req.params)
      p[k] = v;
    if (req.method == "POST" && !req.body.empty()) {
      const nlohmann::json body =
          nlohmann::json::parse(req.body, nullptr, false);
      if (body.is_discarded() || !body.is_object())
        throw ApiError(400, "the request body is not a JSON object", "",
                       "invalid_json");
      for (auto &[k, v] : index::params_from_json(body))
        p[k] = v;
    }
    const index::ApiResponse r = index::handle_search_request(idx, req.path, p);
    res.status = r.status;
    res.set_content(index::dump_json(r.body), "application/json");
  };
  server.add_api_get(R"(/v1/search/[a-z]+)", handler);
  server.add_api_post(R"(/v1/search/[a-z]+)", handler);
  server.add_page("/search", "web/search.html");
}

} // namespace tsumugi::serve

# Script tests of the HTTP server against real tools (wrk, Prometheus), run
# on a tiny server process. Both skip (exit 77) when the tool is missing.
add_executable(http_test_server ${CMAKE_CURRENT_SOURCE_DIR}/http_server_main.c)
target_link_libraries(http_test_server PRIVATE rlhf_common)

if(RLHF_SANITIZE)
  set(RLHF_HTTP_LOAD_MODE asan)
else()
  set(RLHF_HTTP_LOAD_MODE plain)
endif()
add_test(NAME http_load
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/http_load.sh $<TARGET_FILE:http_test_server> ${RLHF_HTTP_LOAD_MODE})
# RUN_SERIAL: wrk saturates both cores; timing-sensitive tests must not share them
set_tests_properties(http_load PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
add_test(NAME prometheus_scrape
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/prometheus_scrape.sh $<TARGET_FILE:http_test_server>)
set_tests_properties(prometheus_scrape PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77)

# The container stack (docker/): images, compose up and scale, a killed actor's
# tickets reissued, Prometheus over every replica. Skips (77) without a Docker
# engine or a compose tool. Label docker: `make test-asan` leaves it out
# (ctest -LE docker), so CI runs it once, in `make test`.
add_test(NAME docker_stack COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/docker/docker_test.sh ${CMAKE_SOURCE_DIR})
set_tests_properties(docker_stack PROPERTIES LABELS docker TIMEOUT 1500 SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)

# The learner's live page in headless Chromium (the DOM is filled in from
# /status; a screenshot lands in the build folder). Skipped (77) without chromium.
add_test(NAME page_screenshot
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/page_screenshot.sh ${CMAKE_BINARY_DIR} $<TARGET_FILE:http_test_server>
          ${CMAKE_BINARY_DIR})
set_tests_properties(page_screenshot PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77)

import warden
from langchain.agents import create_agent
from langchain_core.tools import tool
from warden.langchain import WardenMiddleware

@tool
def delete_file(path: str) -> str:
    """Delete a file."""
    return f"deleted {path}"

def run(model, policy="policies/default"):  # model: e.g. "openai:gpt-5"; the test passes a scripted fake
    kernel = warden.Kernel(policy)  # compiled once; data_dir=... adds the signed audit log
    agent = create_agent(model, tools=[delete_file], middleware=[WardenMiddleware(kernel, agent="files-bot")])
    return agent.invoke({"messages": [("user", "Please delete /etc/passwd")]})  # the tool never runs

"""The code of every registered version (MLflow's "models from code"): MLflow copies this file into the version and
runs it when the version is loaded, so nothing is unpickled (deployments that set
MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false load it too). The model is the installed sales_sql's InvoiceLines."""
from mlflow.models import set_model

from sales_sql.pyfunc import InvoiceLines

set_model(InvoiceLines())
